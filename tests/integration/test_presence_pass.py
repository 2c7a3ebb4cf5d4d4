"""The worker's presence pass (worker/jobs/presence.py): rooms empty or unused for their timeout end
(`room.ended`, reason `empty` or `unused`), with no join slipping in; sessions are recorded in Postgres
with their exact times and figures, once, with `session.started` and `session.ended`; sessions of a room
ended while no pass ran are recorded all the same; and a session Redis lost ends `lost`, at the last
moment seen. presence.lua's checks and ends (the empty room, the race) run on every topology; what
the pass then records in Postgres, once per suite. Spans of 1-3 s on real clocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from api.app import create_app
from common.redis.keys import (
    distinct_key,
    ended_room_key,
    participants_key,
    room_key,
    session_key,
    sessions_key,
)
from common.redis.sessions import PRESENCE, Session, epoch_ms, parse_check, parse_session
from common.signaling.contract import JoinContract
from tests.support.metrics import metric_value
from tests.support.processes import ROOMSERVICE, environment, free_port, stop_as_container
from tests.support.rooms import create
from tests.support.waiting import eventually
from worker.jobs.lifecycle import start_rooms
from worker.jobs.presence import check_presence
from worker.resources import worker_resources

HEARTBEAT_MS = 30_000


def someone() -> str:
    return str(uuid.uuid4())


async def room_with(client, host, **body: object) -> str:
    return (await create(client, host, **body))["roomId"]


async def events(db, room_id: str, *types: str) -> list[tuple[str, datetime, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT type, occurred_at, data FROM room_events WHERE room_id = $1 AND type = ANY($2::text[]) ORDER BY id",
        room_id,
        list(types),
    )
    return [(row["type"], row["occurred_at"], json.loads(row["data"])) for row in rows]


async def recorded(db, room_id: str) -> list[Any]:
    return await db.fetch(
        "SELECT s.* FROM room_sessions s JOIN meetings m ON m.id = s.meeting_id WHERE m.room_id = $1 "
        "ORDER BY started_at",
        room_id,
    )


def as_session(row: Any) -> Session:
    return Session(
        epoch_ms(row["started_at"]),
        None if row["ended_at"] is None else epoch_ms(row["ended_at"]),
        row["peak_participants"],
        row["distinct_participants"],
        row["participant_ms"],
        row["end_reason"],
    )


async def is_active(db, room_id: str) -> bool:
    return await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", room_id)


async def test_a_room_empty_for_its_timeout_ends_and_its_session_is_recorded_once(
    client, host, redis_client, worker_res, db
) -> None:
    contract = JoinContract(redis_client)
    room_id = await room_with(client, host, emptyTimeoutSeconds=1, unusedTimeoutSeconds=0)
    kept = await room_with(client, host, emptyTimeoutSeconds=0, unusedTimeoutSeconds=0)  # never ends by itself
    ctx = {"resources": worker_res}
    for room in (room_id, kept):
        assert (await contract.join(room, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await check_presence(ctx)
    [started] = await events(db, room_id, "session.started")
    assert started[2]["session"]["peakParticipants"] == 1
    [open_row] = await recorded(db, room_id)
    assert open_row["ended_at"] is None

    for room in (room_id, kept):
        assert await contract.leave(room, "alice") is True
    [in_redis] = [parse_session(r.decode()) for r in await redis_client.lrange(sessions_key(room_id), 0, -1)]
    assert in_redis.ended_ms is not None

    async def ended() -> bool:
        await check_presence(ctx)
        return not await is_active(db, room_id)

    await eventually(ended, 30, "the empty room ended")
    [(_, ended_at, data)] = await events(db, room_id, "room.ended")
    assert data["reason"] == "empty"
    exposed = worker_res.metrics.exposition().decode()
    assert metric_value(exposed, "roomservice_rooms_ended_total", reason="empty") == 1
    assert (metric_value(exposed, "roomservice_rooms_live") or 0) >= 1  # `kept`, at least
    assert epoch_ms(ended_at) >= in_redis.ended_ms + 1_000  # not before its timeout
    assert await is_active(db, kept)
    assert (await client.get(f"/rooms/{room_id}")).status_code == 410
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "not_cached"

    # Recorded as Redis kept it, to the ms, and announced once however many passes ran.
    await check_presence(ctx)
    [row] = await recorded(db, room_id)
    assert as_session(row) == in_redis
    [(_, at, data)] = await events(db, room_id, "session.ended")
    assert epoch_ms(at) == in_redis.ended_ms
    assert data["session"]["endReason"] == "empty"
    assert data["session"]["durationSeconds"] == (in_redis.ended_ms - in_redis.started_ms) / 1000
    assert len(await events(db, room_id, "session.started")) == 1
    assert not await redis_client.exists(sessions_key(room_id))  # recorded: taken off Redis


@pytest.mark.one_topology  # what the pass records in Postgres: the same on every topology
async def test_a_room_nobody_joined_ends_after_its_unused_timeout(client, host, redis_client, worker_res, db) -> None:
    room_id = await room_with(client, host, unusedTimeoutSeconds=1)
    used = await room_with(client, host, unusedTimeoutSeconds=1, emptyTimeoutSeconds=0)
    assert (await JoinContract(redis_client).join(used, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await JoinContract(redis_client).leave(used, "alice")  # used once: empty, never ends
    ctx = {"resources": worker_res}

    async def ended() -> bool:
        await check_presence(ctx)
        return not await is_active(db, room_id)

    await eventually(ended, 30, "the unused room ended")
    [(_, _, data)] = await events(db, room_id, "room.ended")
    assert data["reason"] == "unused"
    assert await is_active(db, used)
    assert await recorded(db, room_id) == []


async def test_a_join_racing_the_end_either_keeps_the_room_or_is_refused(
    client, host, redis_client, worker_res, db
) -> None:
    """Many rooms due to end as unused, each joined at the moment the pass decides: a join admitted
    keeps its room, and a room that ended admitted nobody."""
    contract = JoinContract(redis_client)
    rooms = [await room_with(client, host, unusedTimeoutSeconds=1) for _ in range(40)]
    await asyncio.sleep(1.0)  # their timeout is over: the next pass ends every room nobody joins first

    async def join(room: str) -> str:
        await asyncio.sleep(0.001 * (hash(room) % 20))  # spread over the pass
        return (await contract.join(room, "alice", HEARTBEAT_MS)).outcome

    outcomes, _ = await asyncio.gather(
        asyncio.gather(*(join(room) for room in rooms)), check_presence({"resources": worker_res})
    )
    admitted = {room for room, outcome in zip(rooms, outcomes, strict=True) if outcome == "admitted"}
    assert set(outcomes) <= {"admitted", "not_cached"}
    for room in rooms:
        live = await is_active(db, room)
        assert live == (room in admitted), room
        in_set = await redis_client.zscore(participants_key(room), "alice") is not None
        assert in_set == (room in admitted), room


@pytest.mark.one_topology  # what the pass records in Postgres: the same on every topology
async def test_sessions_of_a_room_ended_while_no_pass_ran_are_all_recorded(
    client, host, redis_client, worker_res, db
) -> None:
    contract = JoinContract(redis_client)
    room_id = await room_with(client, host)
    await check_presence({"resources": worker_res})  # the ended rooms the next pass visits start here
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await contract.leave(room_id, "alice")
    for member in ("bob", "carol"):
        assert (await contract.join(room_id, member, HEARTBEAT_MS)).outcome == "admitted"
    assert (await client.delete(f"/rooms/{room_id}", headers=host)).status_code == 204
    kept = [parse_session(r.decode()) for r in await redis_client.lrange(sessions_key(room_id), 0, -1)]
    assert [s.reason for s in kept] == ["empty", "room_ended"]

    async def both_recorded() -> bool:  # once the end is marked published (a moment after it is)
        await check_presence({"resources": worker_res})
        return len(await recorded(db, room_id)) == 2

    await eventually(both_recorded, 30, "the ended room's sessions recorded")
    assert [as_session(row) for row in await recorded(db, room_id)] == kept
    written = await events(db, room_id, "session.started", "session.ended")
    assert [event_type for event_type, _, _ in written] == ["session.started", "session.ended"] * 2
    # A session first seen ended is announced as it began: one participant, nobody's time yet.
    assert written[0][2]["session"] == {
        "startedAt": written[0][2]["session"]["startedAt"],
        "peakParticipants": 1,
        "distinctParticipants": 1,
        "participantSeconds": 0,
    }
    for key in (session_key(room_id), distinct_key(room_id), sessions_key(room_id)):
        assert not await redis_client.exists(key)


@pytest.mark.one_topology  # a server of the test's own, to restart
async def test_a_session_redis_lost_ends_lost_at_the_last_moment_seen(own_redis, settings_with, host, db) -> None:
    settings = settings_with(redis_url=own_redis.connection_url, redis_retry_seconds=0.2)
    async with AsyncTestClient(app=create_app(settings)) as client, worker_resources(settings) as res:
        contract = JoinContract(cast(Redis, res.redis))  # standalone, as own_redis is
        room_id = await room_with(client, host, emptyTimeoutSeconds=0, unusedTimeoutSeconds=0)
        assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
        await check_presence({"resources": res})
        [seen] = await recorded(db, room_id)

        own_redis.stop()  # no persistence: the room's object, participants and session are gone
        own_redis.start()
        await eventually(res.guarded.ping, 10, "Redis back")
        assert (await client.get(f"/rooms/{room_id}")).status_code == 200  # cached again from Postgres
        assert (await contract.join(room_id, "bob", HEARTBEAT_MS)).outcome == "admitted"  # a new session

        await check_presence({"resources": res})

        lost, new = await recorded(db, room_id)
        assert (lost["end_reason"], lost["ended_at"]) == ("lost", seen["seen_at"])
        assert lost["participant_ms"] == seen["participant_ms"]
        assert new["ended_at"] is None
        # In the order they happened: the lost session's end, then the new one's start.
        written = await events(db, room_id, "session.started", "session.ended")
        assert [(t, at) for t, at, _ in written][1:] == [
            ("session.ended", seen["seen_at"]),
            ("session.started", new["started_at"]),
        ]
        assert written[1][2]["session"]["endReason"] == "lost"
        assert await is_active(db, room_id)  # the room lives on


@pytest.mark.one_topology
async def test_a_worker_process_ends_an_empty_room_within_its_timeout_and_one_check_period(
    settings, client, host, redis_client, own_redis, tmp_path, db
) -> None:
    port = free_port()
    env = environment(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        queue_redis_url=own_redis.connection_url,  # arq's queue of its own, as test_schedule_lifecycle's
        presence_check_seconds="1",
        worker_metrics_port=str(port),
    )
    contract = JoinContract(redis_client)
    room_id = await room_with(client, host, emptyTimeoutSeconds=1)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*ROOMSERVICE, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        async def checking() -> bool:  # the pass has run: the worker's clock is going
            assert worker.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                return (metric_value(text, "roomservice_worker_job_runs_total", job="check_presence") or 0) >= 1
            return False

        await eventually(checking, 60, "the worker's presence pass running")
        assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
        await contract.leave(room_id, "alice")
        [left] = [parse_session(r.decode()) for r in await redis_client.lrange(sessions_key(room_id), 0, -1)]

        async def ended() -> bool:
            return not await is_active(db, room_id)

        await eventually(ended, 30, "the worker ended the empty room")
    finally:
        stop_as_container(worker)
    [(_, ended_at, data)] = await events(db, room_id, "room.ended")
    assert data["reason"] == "empty"
    assert left.ended_ms is not None
    # Due 1 s after alice left; checked every second. The slack is a slow machine's.
    assert 1_000 <= epoch_ms(ended_at) - left.ended_ms <= (1 + 1 + 3) * 1_000


@pytest.mark.one_topology  # what the pass records in Postgres: the same on every topology
async def test_an_end_decided_in_redis_is_finished_by_the_next_pass(client, host, redis_client, worker_res, db) -> None:
    """A worker that dies between the check that ended the room in Redis and the transaction that ends
    it in Postgres: the mark says why and when, and the next pass ends it so, at that moment."""
    room_id = await room_with(client, host, unusedTimeoutSeconds=1)
    await asyncio.sleep(1.0)
    start_ms = epoch_ms(datetime.fromisoformat((await client.get(f"/rooms/{room_id}")).json()["startsAt"]))
    reply = await redis_client.evalsha(
        PRESENCE.sha, 3, room_key(room_id), ended_room_key(room_id), participants_key(room_id), start_ms, 0, 1000, 0
    )
    decided = parse_check(reply)
    assert decided.verdict == "unused"
    assert await is_active(db, room_id)  # the worker died here

    await check_presence({"resources": worker_res})

    assert not await is_active(db, room_id)
    [(_, ended_at, data)] = await events(db, room_id, "room.ended")
    assert (data["reason"], epoch_ms(ended_at)) == ("unused", decided.decided_ms)


@pytest.mark.one_topology  # what the pass records in Postgres: the same on every topology
async def test_a_room_used_only_before_its_start_is_unused(client, host, redis_client, worker_res, db) -> None:
    """Someone came early (the early-join allowance) and left before the start: nobody joined since
    the room started, so it ends unused, after its unused timeout from the start."""
    contract = JoinContract(redis_client)
    starts_at = datetime.now(UTC) + timedelta(seconds=2)
    room_id = await room_with(
        client, host, startsAt=starts_at.isoformat(), emptyTimeoutSeconds=1, unusedTimeoutSeconds=2
    )
    assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
    await contract.leave(room_id, "alice")
    ctx = {"resources": worker_res}

    async def ended() -> bool:
        await start_rooms(ctx)
        await check_presence(ctx)
        return not await is_active(db, room_id)

    await eventually(ended, 30, "the room ended")
    [(_, ended_at, data)] = await events(db, room_id, "room.ended")
    assert data["reason"] == "unused"
    assert ended_at >= starts_at + timedelta(seconds=2)


@pytest.mark.one_topology  # what the pass records in Postgres: the same on every topology
async def test_a_room_whose_sessions_the_database_refuses_holds_up_no_other(
    client, host, redis_client, worker_res, db
) -> None:
    contract = JoinContract(redis_client)
    bad, good = await room_with(client, host), await room_with(client, host)
    for room in (bad, good):
        assert (await contract.join(room, "alice", HEARTBEAT_MS)).outcome == "admitted"
        await contract.leave(room, "alice")
    # Another writer's record, ending before it began: the database's check refuses it.
    await redis_client.rpush(sessions_key(bad), "2000 1000 1 1 0 empty")

    await check_presence({"resources": worker_res})

    [row] = await recorded(db, good)
    assert row["end_reason"] == "empty"
    assert await recorded(db, bad) == []
    assert len(await redis_client.lrange(sessions_key(bad), 0, -1)) == 2  # kept, not forgotten
