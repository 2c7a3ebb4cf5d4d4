"""Retention (worker/jobs/prune.py): ended rooms past ROOMS_RETENTION_DAYS leave the database with their
history, outbox events and Idempotency-Keys, their codes retired for good; the daily statistics stay.
Rooms are made old by backdating their rows, against real Postgres."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import date
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.db.rooms import NewRoom, create_rooms
from common.metrics import PREFIX
from common.redis.client import close_redis, create_queue_redis
from common.rooms.codes import generate_room_code
from tests.support.metrics import metric_value
from tests.support.rooms import create
from tests.support.waiting import eventually
from worker.jobs.prune import prune
from worker.resources import worker_resources
from worker.schedule import worker_settings

pytestmark = pytest.mark.one_topology  # Postgres work: the Redis topology plays no part

_DAY = 86400


async def old_ended_room(client: AsyncTestClient, db: asyncpg.Connection, days_ago: int, **body: object) -> str:
    """A room made through the API, with an Idempotency-Key and a recorded history, ended `days_ago`."""
    headers = {"X-User-Id": str(uuid.uuid4()), "Idempotency-Key": uuid.uuid4().hex}
    code = str((await create(client, headers, **body))["roomId"])
    assert (await client.patch(f"/rooms/{code}", headers=headers, json={"maxParticipants": 3})).status_code == 200
    assert (await client.delete(f"/rooms/{code}", headers=headers)).status_code == 204
    # The history consumer's part, done here: what it records is the events of the outbox.
    await db.execute(
        "INSERT INTO room_history (event_id, room_id, type, version, occurred_at, data) "
        "SELECT event_id, room_id, type, version, occurred_at, data FROM room_events WHERE room_id = $1",
        code,
    )

    # The API marks what it published a moment later (common/service/publish.py): once it has, no mark of
    # its own can undo what a test then does to the rows.
    async def marked() -> bool:
        query = "SELECT count(*) FROM room_events WHERE room_id = $1 AND published_at IS NULL"
        return await db.fetchval(query, code) == 0

    await eventually(marked, 10, "the API marked its events published")
    await backdate(db, code, days_ago)
    return code


async def backdate(db: asyncpg.Connection, code: str, days_ago: int) -> None:
    await db.execute(
        "UPDATE meetings SET created_at = now() - make_interval(days => $2 + 1), "
        "starts_at = now() - make_interval(days => $2 + 1), expires_at = now() - make_interval(days => $2) "
        "WHERE room_id = $1",
        code,
        days_ago,
    )


async def rows_of(db: asyncpg.Connection, code: str) -> dict[str, int]:
    counts = {}
    for table in ("meetings", "room_history", "room_events", "idempotency_keys"):
        counts[table] = await db.fetchval(f"SELECT count(*) FROM {table} WHERE room_id = $1", code)
    return counts


async def run_prune(settings_with, **overrides: object) -> int:
    async with worker_resources(settings_with(**overrides)) as res:
        return await prune({"resources": res})


async def test_old_ended_rooms_go_with_their_history_events_and_keys(client, db, settings_with) -> None:
    old = await old_ended_room(client, db, days_ago=91)
    recent = await old_ended_room(client, db, days_ago=89)
    live = str((await create(client, {"X-User-Id": str(uuid.uuid4())}))["roomId"])
    stats_day = date(2001, 2, 3)  # a day of the test's own, long past
    await db.execute("INSERT INTO daily_room_stats (day, rooms_created, rooms_ended) VALUES ($1, 5, 4)", stats_day)
    assert (await rows_of(db, old))["idempotency_keys"] == 1
    assert (await rows_of(db, old))["room_history"] == 3  # created, updated, ended

    await run_prune(settings_with, retention_days=90)

    assert await rows_of(db, old) == {"meetings": 0, "room_history": 0, "room_events": 0, "idempotency_keys": 0}
    assert await db.fetchval("SELECT count(*) FROM retired_room_codes WHERE room_id = $1", old) == 1
    for kept in (recent, live):
        rows = await rows_of(db, kept)
        assert rows["meetings"] == 1
        assert rows["room_events"] >= 1
    assert (await rows_of(db, recent))["room_history"] == 3
    assert await db.fetchval("SELECT rooms_created FROM daily_room_stats WHERE day = $1", stats_day) == 5


async def test_a_room_with_an_event_waiting_for_the_relay_stays_until_it_is_published(
    client, db, settings_with
) -> None:
    code = await old_ended_room(client, db, days_ago=100)
    await db.execute("UPDATE room_events SET published_at = NULL WHERE room_id = $1 AND type = 'room.ended'", code)
    try:
        await run_prune(settings_with, retention_days=90)
        assert (await rows_of(db, code))["meetings"] == 1

        await db.execute("UPDATE room_events SET published_at = now() WHERE room_id = $1", code)
        await run_prune(settings_with, retention_days=90)
        assert (await rows_of(db, code))["meetings"] == 0
    finally:
        await db.execute("DELETE FROM room_events WHERE room_id = $1", code)


async def test_retention_zero_keeps_everything(client, db, settings_with) -> None:
    code = await old_ended_room(client, db, days_ago=3650)

    await run_prune(settings_with, retention_days=0)

    assert await rows_of(db, code) == {"meetings": 1, "room_history": 3, "room_events": 3, "idempotency_keys": 1}


async def test_the_retention_is_never_shorter_than_the_stream_keeps_events(client, db, settings_with) -> None:
    # Pruned sooner, an event of the room still in the stream could be recorded, and counted, again.
    code = await old_ended_room(client, db, days_ago=2)

    await run_prune(settings_with, retention_days=1, stream_retention_seconds=3 * _DAY)
    assert (await rows_of(db, code))["meetings"] == 1

    await run_prune(settings_with, retention_days=1, stream_retention_seconds=_DAY)
    assert (await rows_of(db, code))["meetings"] == 0


async def test_the_code_of_a_pruned_room_is_never_handed_out_again(client, db, settings_with) -> None:
    retired = await old_ended_room(client, db, days_ago=91)
    await run_prune(settings_with, retention_days=90)
    assert (await rows_of(db, retired))["meetings"] == 0

    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        await create_rooms(db, [NewRoom(retired, uuid.uuid4(), 4, 3600)])
    assert refused.value.constraint_name == "meetings_room_id_key"  # what the create path draws again on

    fresh = generate_room_code()
    codes = itertools.chain([retired, fresh], iter(generate_room_code, None))
    async with AsyncTestClient(app=create_app(settings_with(), new_room_code=lambda: next(codes))) as api:
        made = await create(api, {"X-User-Id": str(uuid.uuid4())})
        metrics = (await api.get("/metrics")).text
    assert made["roomId"] == fresh
    assert metric_value(metrics, PREFIX + "room_code_collisions_total") == 1


async def test_a_code_being_retired_while_a_room_takes_it_is_refused(client, db, database_url) -> None:
    # The create waits for the pruning transaction on the code's unique index, then must still see
    # the code retired: a check before the insert would have looked too early.
    code = await old_ended_room(client, db, days_ago=91)
    pruning = await asyncpg.connect(database_url, timeout=10)
    creating = await asyncpg.connect(database_url, timeout=10)
    try:
        async with pruning.transaction():
            await pruning.execute("INSERT INTO retired_room_codes VALUES ($1)", code)
            await pruning.execute("DELETE FROM idempotency_keys WHERE room_id = $1", code)
            await pruning.execute("DELETE FROM meetings WHERE room_id = $1", code)
            insert = asyncio.create_task(create_rooms(creating, [NewRoom(code, uuid.uuid4(), 4, 3600)]))  # type: ignore[arg-type]

            async def waits_for_the_pruning() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                        creating.get_server_pid(),
                    )
                )

            await eventually(waits_for_the_pruning, 10, "the create waits on the pruned room's row")
        with pytest.raises(asyncpg.UniqueViolationError):
            await asyncio.wait_for(insert, 10)
    finally:
        await pruning.close()
        await creating.close()
    assert (await rows_of(db, code))["meetings"] == 0


async def test_pruning_runs_at_the_workers_start_and_is_counted(client, db, settings) -> None:
    code = await old_ended_room(client, db, days_ago=91)
    async with worker_resources(settings) as res:
        queue = create_queue_redis(settings, 5, ArqRedis)
        options = worker_settings(res) | {"poll_delay": 0}
        options["cron_jobs"] = [job for job in options["cron_jobs"] if job.name == "cron:prune"]
        assert options["cron_jobs"], "no pruning among the worker's periodic jobs"
        queue_name = f"test-queue-{uuid.uuid4().hex[:8]}"
        worker = Worker(**options, redis_pool=queue, queue_name=queue_name, burst=True, handle_signals=False)
        try:
            await asyncio.wait_for(worker.main(), 60)
        finally:
            await close_redis(queue)
        metrics = res.metrics.exposition().decode()
    assert worker.jobs_complete == 1
    assert (await rows_of(db, code))["meetings"] == 0
    assert (metric_value(metrics, PREFIX + "worker_pruned_rows_total", table="meetings") or 0) >= 1
    assert (metric_value(metrics, PREFIX + "worker_pruned_rows_total", table="room_history") or 0) >= 3


async def test_a_run_goes_on_from_where_the_last_one_reached_and_a_daily_pass_from_the_beginning(
    client, db, settings_with
) -> None:
    """Later runs do not walk again over the rooms earlier runs deleted: they start where the last one
    reached. A room passed over (its event waited for the relay) goes in the next full pass."""
    waited = await old_ended_room(client, db, days_ago=120)
    code = waited
    await db.execute("UPDATE room_events SET published_at = NULL WHERE room_id = $1 AND type = 'room.ended'", code)
    newer = await old_ended_room(client, db, days_ago=100)
    try:
        async with worker_resources(settings_with(retention_days=90)) as res:
            ctx: dict[str, Any] = {"resources": res}
            await prune(ctx)  # a full pass: the first of this worker
            assert (await rows_of(db, newer))["meetings"] == 0
            assert (await rows_of(db, waited))["meetings"] == 1
            await db.execute("UPDATE room_events SET published_at = now() WHERE room_id = $1", code)

            await prune(ctx)  # goes on from the newer room's expiry: the one before it is behind
            assert (await rows_of(db, waited))["meetings"] == 1

            reached, _ = ctx["prune_rooms_from"]
            ctx["prune_rooms_from"] = (reached, time.monotonic() - 86400)  # a day since the full pass
            await prune(ctx)
            assert (await rows_of(db, waited))["meetings"] == 0
    finally:
        await db.execute("DELETE FROM room_events WHERE room_id = $1", code)
