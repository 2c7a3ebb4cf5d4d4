"""The worker's presence pass (worker/jobs/presence.py): rooms empty or unused for their timeout end
(`room.ended`, reason `empty` or `unused`), with no join slipping in; sessions are recorded in Postgres
with their exact times and figures, once, with `session.started` and `session.ended`; sessions of a room
ended while no pass ran are recorded all the same (a lost session and a worker process:
test_presence_processes). presence.lua's checks and ends (the empty room, the race) run on every topology; what
the pass then records in Postgres, once per suite. Spans of 1-3 s on real clocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from common.redis.keys import (
    distinct_key,
    ended_room_key,
    participants_key,
    room_key,
    session_key,
    sessions_key,
)
from common.redis.sessions import PRESENCE, epoch_ms, parse_check, parse_session
from common.signaling.contract import JoinContract
from tests.support.metrics import metric_value
from tests.support.presence import HEARTBEAT_MS, as_session, events, is_active, recorded, room_with
from tests.support.waiting import eventually
from worker.jobs.lifecycle import start_rooms
from worker.jobs.presence import check_presence


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
