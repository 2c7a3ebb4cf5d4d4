"""Rooms on the calendar over their life, with real clocks: an end moved later or sooner (the room
object and the participants' set move with it), `room.started` from the start job and from a real
worker process, the days' `roomsStarted`, and the rows from before migration 0013."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from common.db import lifecycle
from common.redis.keys import PRESENCE_GRACE_MS, participants_key, room_key, sessions_key
from common.rooms.events import from_stream_fields
from common.settings import Settings
from common.signaling.contract import JoinContract
from roomservice.migrate import available_migrations, migrate
from tests.support.metrics import metric_value
from tests.support.processes import ROOMSERVICE, environment, free_port
from tests.support.relay import published
from tests.support.rooms import create, events_of, raw_data_of
from tests.support.waiting import eventually
from worker.history import HistoryConsumer
from worker.jobs.lifecycle import expire_rooms, start_rooms

ADMIN = str(uuid.uuid4())
HEARTBEAT_MS = 120_000  # outlives every test: a member never lapses on its own here
# How far ahead booked rooms start: time to book them and run a job before, short enough to stay quick.
SOON = timedelta(seconds=2.5)


@pytest.fixture
def settings(settings_with) -> Settings:
    return settings_with(admin_user_ids=ADMIN)


@pytest.fixture
def contract(redis_client) -> JoinContract:
    return JoinContract(redis_client)


async def book(client, host, starts_at: datetime) -> str:
    return (await create(client, host, startsAt=starts_at.isoformat()))["roomId"]


async def of_type(redis_client, stream_name: str, room_id: str, type_: str) -> list:
    return [e for e in await events_of(redis_client, stream_name, room_id) if e.type == type_]


async def outboxed(db, room_id: str, type_: str) -> int:
    """How many events of `type_` the room has in the outbox: whether published yet or not."""
    return await db.fetchval("SELECT count(*) FROM room_events WHERE room_id = $1 AND type = $2", room_id, type_)


async def drain(res) -> None:
    """Let the history consumer record everything the test's stream holds."""
    consumer = HistoryConsumer(res, name="consumer-1", block_ms=10)
    await consumer.ensure_group()
    while entries := await consumer.read(own_backlog=False):
        await consumer.handle(entries)


def ms(moment: datetime) -> float:
    return moment.timestamp() * 1000


# -- a moved end ------------------------------------------------------------------------------------


async def test_an_extended_room_outlives_its_old_end(client, host, contract, redis_client, worker_res, stream_name, db):
    code = (await create(client, host))["roomId"]
    # The API takes no end closer than 10 s: the row is given one 3 s ahead, and the room cached
    # again from it, as any miss caches it.
    old_end = await db.fetchval(
        "UPDATE meetings SET expires_at = now() + interval '3 seconds' WHERE room_id = $1 RETURNING expires_at", code
    )
    await redis_client.delete(room_key(code))
    assert (await client.get(f"/rooms/{code}")).status_code == 200
    assert (await contract.join(code, "alice", HEARTBEAT_MS)).outcome == "admitted"
    # The join gave it the room's end, and the day past it that sessions keep.
    assert 0 < await redis_client.pttl(participants_key(code)) - PRESENCE_GRACE_MS <= 3_000

    new_end = datetime.now(UTC) + timedelta(seconds=60)
    response = await client.patch(f"/rooms/{code}", headers=host, json={"expiresAt": new_end.isoformat()})
    assert response.status_code == 200, response.text

    async def past_old_end() -> bool:
        return time.time() > old_end.timestamp() + 1

    await eventually(past_old_end, 30, "the old end passed")
    assert (await client.get(f"/rooms/{code}")).status_code == 200
    for key, past_end in ((room_key(code), 0), (participants_key(code), PRESENCE_GRACE_MS)):
        assert abs(await redis_client.pttl(key) - past_end - (ms(new_end) - time.time() * 1000)) < 2_000, key
    await published(db, code)  # else an end would wait for the relay, behind the change
    await expire_rooms({"resources": worker_res})
    assert await of_type(redis_client, stream_name, code, "room.ended") == []
    assert await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", code) is True
    assert (await contract.join(code, "alice", HEARTBEAT_MS)).outcome == "already_in"


# One topology: the participants' expiry moving with the end is the extension's test, on every one;
# this one waits out the 10 s notice a shortened end must give.
@pytest.mark.one_topology
async def test_a_shortened_room_ends_at_its_new_end(client, host, contract, redis_client, worker_res, stream_name, db):
    code = (await create(client, host))["roomId"]
    assert (await contract.join(code, "alice", HEARTBEAT_MS)).outcome == "admitted"
    assert await redis_client.pttl(participants_key(code)) > 3_600_000  # the room's day-long lifetime

    new_end = datetime.now(UTC) + timedelta(seconds=11)  # the soonest the API takes is 10 s ahead
    response = await client.patch(f"/rooms/{code}", headers=host, json={"expiresAt": new_end.isoformat()})
    assert response.status_code == 200, response.text

    room_ttl, members_ttl = await redis_client.pttl(room_key(code)), await redis_client.pttl(participants_key(code))
    assert 0 < room_ttl <= 11_000
    assert abs(room_ttl + PRESENCE_GRACE_MS - members_ttl) < 1_000  # moved in the same step as the room's

    async def lapsed() -> bool:  # on its own, with nobody asking
        return not await redis_client.exists(room_key(code))

    await eventually(lapsed, 45, "the room object gone at the new end")
    assert time.time() >= new_end.timestamp() - 0.01

    async def gone() -> bool:
        return (await client.get(f"/rooms/{code}")).status_code == 410

    await eventually(gone, 30, "GET answers 410")
    await published(db, code)
    await expire_rooms({"resources": worker_res})
    await expire_rooms({"resources": worker_res})  # a second run ends nothing again
    [ended] = await of_type(redis_client, stream_name, code, "room.ended")
    assert ended.data.reason == "expired"
    assert ended.occurred_at >= new_end
    assert not await redis_client.exists(participants_key(code))
    assert (await contract.join(code, "alice", HEARTBEAT_MS)).outcome == "not_cached"
    # alice was in until the room's object expired, at its new end, though the end came later.
    [session] = await redis_client.lrange(sessions_key(code), 0, -1)
    _, ended_at, *_, reason = session.decode().split()
    assert (int(ended_at), reason) == (int(ms(new_end)), "room_ended")


# -- room.started ---------------------------------------------------------------------------------


@pytest.mark.one_topology  # the outbox and the job decide; the stream is the same on every topology
async def test_the_start_job_announces_a_booked_room_once_at_its_start(
    client, host, worker_res, redis_client, stream_name, db
) -> None:
    starts_at = datetime.now(UTC) + SOON
    booked = await book(client, host, starts_at)
    cancelled = await book(client, host, starts_at - timedelta(seconds=1))
    assert (await client.delete(f"/rooms/{cancelled}", headers=host)).status_code == 204
    unscheduled = (await create(client, host))["roomId"]

    await start_rooms({"resources": worker_res})
    assert datetime.now(UTC) < starts_at, f"booking and one run took longer than {SOON}: lengthen SOON"
    assert await outboxed(db, booked, "room.started") == 0
    assert (await client.get(f"/rooms/{booked}")).json()["status"] == "scheduled"
    for code in (booked, cancelled, unscheduled):
        await published(db, code)  # else the start would wait for the relay, behind the create

    async def announced() -> bool:
        await start_rooms({"resources": worker_res})
        return bool(await of_type(redis_client, stream_name, booked, "room.started"))

    await eventually(announced, SOON.total_seconds() + 30, "room.started of the booked room")
    [started] = await of_type(redis_client, stream_name, booked, "room.started")
    [data] = await raw_data_of(redis_client, stream_name, booked, "room.started")
    assert started.version == 2
    assert datetime.fromisoformat(data["startsAt"]) == starts_at
    assert started.occurred_at >= starts_at
    await start_rooms({"resources": worker_res})
    assert len(await of_type(redis_client, stream_name, booked, "room.started")) == 1
    assert await outboxed(db, booked, "room.started") == 1
    assert (await client.get(f"/rooms/{booked}")).json()["status"] == "active"
    for never in (cancelled, unscheduled):  # written, to be published later, or not
        assert await outboxed(db, never, "room.started") == 0, never


@pytest.mark.one_topology  # recorded from the outbox and the stream alike on every topology
async def test_daily_stats_count_a_room_started_when_it_starts(
    client, host, worker_res, redis_client, stream_name, db
) -> None:
    today = datetime.now(UTC).date()
    # Around today, so that a test running over midnight still finds its rooms.
    around = (today - timedelta(days=1), today + timedelta(days=1))
    days = f"from={around[0]}&to={around[1]}"

    async def rooms_started() -> int:
        response = await client.get(f"/stats/daily?{days}", headers={"X-User-Id": ADMIN})
        assert response.status_code == 200, response.text
        return sum(day["roomsStarted"] for day in response.json()["days"])

    before = await rooms_started()
    await create(client, host)
    await drain(worker_res)
    assert await rooms_started() == before + 1  # open at once: started on creation

    booked = await book(client, host, datetime.now(UTC) + SOON)
    await drain(worker_res)
    assert await rooms_started() == before + 1  # booked: not yet

    await published(db, booked)

    async def announced() -> bool:
        await start_rooms({"resources": worker_res})
        return bool(await of_type(redis_client, stream_name, booked, "room.started"))

    await eventually(announced, SOON.total_seconds() + 30, "room.started of the booked room")
    await drain(worker_res)
    # The job starts every room whose start has come, other tests' booked rooms too, onto this
    # test's stream: each counts on the day of its start, as the booked room does.
    entries = [from_stream_fields(fields) for _, fields in await redis_client.xrange(stream_name)]
    started = [e for e in entries if e.type == "room.started" and e.data.start.date() in (today, *around)]
    assert booked in {e.room_id for e in started}
    assert await rooms_started() == before + 1 + len(started)


@pytest.mark.one_topology
async def test_a_worker_process_announces_a_start_within_seconds(
    settings, client, host, redis_client, stream_name, own_redis, tmp_path, record_property
) -> None:
    port = free_port()
    env = environment(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        # arq's queue on a server of the test's own: the cron jobs a stopped worker leaves queued would
        # otherwise wait in the shared server's default queue for another test's worker.
        queue_redis_url=own_redis.connection_url,
        stream_name=stream_name,
        worker_metrics_port=str(port),
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*ROOMSERVICE, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        async def starting_rooms() -> bool:  # the start job has run: the worker's clock is going
            assert worker.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                return (metric_value(text, "roomservice_worker_job_runs_total", job="start_rooms") or 0) >= 1
            return False

        await eventually(starting_rooms, 60, "the worker's start job running")
        starts_at = datetime.now(UTC) + timedelta(seconds=3)
        booked = await book(client, host, starts_at)

        async def announced() -> bool:
            return bool(await of_type(redis_client, stream_name, booked, "room.started"))

        await eventually(announced, 3 + 30, "room.started from the worker")
        seen_lag = datetime.now(UTC) - starts_at
        [started] = await of_type(redis_client, stream_name, booked, "room.started")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    written_lag = started.occurred_at - starts_at
    # Kept with the results (--junitxml) and shown with -s: how late `room.started` comes.
    record_property("room_started_written_lag_seconds", written_lag.total_seconds())
    record_property("room_started_seen_lag_seconds", seen_lag.total_seconds())
    written, seen = written_lag.total_seconds(), seen_lag.total_seconds()
    sys.stderr.write(f"room.started written {written:.3f} s, seen {seen:.3f} s after its start\n")
    assert timedelta(0) <= written_lag
    assert seen_lag < timedelta(seconds=10)  # about a second here: the job runs every second


# -- migration 0013 -------------------------------------------------------------------------------


async def test_rooms_from_before_the_schedule_started_at_their_creation(scratch_database) -> None:
    shipped = available_migrations()
    await migrate(scratch_database, [m for m in shipped if m.name < "0013"])
    conn = await asyncpg.connect(scratch_database, timeout=10)
    try:
        # As the code of then inserted: no start, no `started`; made an hour ago, so that a start of
        # "now" would not pass for its creation.
        await conn.execute(
            "INSERT INTO meetings (room_id, host_id, created_at, expires_at) "
            "VALUES ('abc-defg-hij', $1, now() - interval '1 hour', now() + interval '1 hour')",
            uuid.uuid4(),
        )
        assert await migrate(scratch_database, shipped) == [m.name for m in shipped if m.name >= "0013"]

        [row] = await conn.fetch(
            "SELECT room_event_data(m) AS data, started FROM meetings m WHERE room_id = 'abc-defg-hij'"
        )
        data = json.loads(row["data"])
        assert data["startsAt"] == data["createdAt"]
        assert row["started"] is True
        assert await lifecycle.start_rooms(conn, 1000) == []  # type: ignore[arg-type]  # a plain connection
    finally:
        await conn.close()
