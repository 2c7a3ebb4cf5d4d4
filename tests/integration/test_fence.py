"""The publish / fence / replay protocol (common/db/publication.py) against real Postgres: every mark
accepted under the old generation lies in the replay window, and a replay batch costs the same
whatever the window's size."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from common.db import publication
from common.db.changes import Changed, Refusal, Refused, RoomChange, ScheduleBounds, update_room
from common.db.outbox import mark_published
from common.db.publication import note_primaries, unmark_replay_batch
from tests.support.waiting import eventually

pytestmark = pytest.mark.one_topology


async def outbox_row(db: asyncpg.Connection) -> int:
    """An unpublished event of a room of its own (the outbox has no foreign key to meetings)."""
    row_id: int = await db.fetchval(
        "INSERT INTO room_events (type, room_id, version, data) VALUES ('room.created', $1, 1, '{}') RETURNING id",
        uuid.uuid4().hex[:10],
    )
    return row_id


async def test_a_mark_committed_before_the_relay_locks_lies_in_the_replay_window(db, database_url) -> None:
    """The relay's transaction begins; a mark begins after it and commits before the relay takes the
    primaries' row: the mark is accepted under the old generation, so the replay window must hold it."""
    outbox_id = await outbox_row(db)
    # The primaries as last seen just now: with a window of 0 s, the replay starts here, so it holds
    # this test's mark and not the suite's other recent events.
    await db.execute("INSERT INTO redis_primaries (identity, generation, seen_at) VALUES ('old', 7, clock_timestamp())")
    relay = await asyncpg.connect(database_url, timeout=10)
    try:
        async with relay.transaction():
            began = await relay.fetchval("SELECT now()")  # the relay's transaction has begun
            await mark_published(db, [(outbox_id, 7)])  # a plain connection: the statement is the same
            marked_at = await db.fetchval("SELECT published_at FROM room_events WHERE id = $1", outbox_id)
            assert marked_at is not None, "the mark was refused: the generation is still the old one"
            assert marked_at > began, "the mark must begin after the relay's transaction did"

            seen = await note_primaries(relay, "new", 0)  # type: ignore[arg-type]  # a plain connection
            assert seen.changed

        window = await db.fetchrow("SELECT replay_from, replay_to, generation FROM redis_primaries")
        assert window["generation"] == 8
        assert window["replay_from"] <= marked_at < window["replay_to"], (
            f"the mark at {marked_at} lies outside the replay window [{window['replay_from']}, {window['replay_to']})"
        )
        await unmark_replay_batch(db, 1000)
        assert await db.fetchval("SELECT published_at FROM room_events WHERE id = $1", outbox_id) is None
    finally:
        await relay.close()
        await db.execute("DELETE FROM room_events WHERE id = $1", outbox_id)


async def test_a_replay_walks_the_window_in_batches_keeping_each_marks_rows_together(db) -> None:
    # A window of its own, far in the past, which no other test's event lies in.
    day = datetime(2001, 1, 1, tzinfo=UTC)
    at = [day + timedelta(hours=h) for h in range(4)]
    # (published_at, how many rows one mark statement marked then); before and after the window too.
    marks = [(day - timedelta(seconds=1), 1), (at[1], 3), (at[2], 2), (at[3], 1), (day + timedelta(days=1), 1)]
    room = uuid.uuid4().hex[:10]  # one room: its events must come back in id order
    ids = []
    for published_at, count in marks:
        ids.append(
            await db.fetch(
                "INSERT INTO room_events (type, room_id, version, data, published_at) "
                "SELECT 'room.updated', $1, v, '{}', $2 FROM generate_series(1, $3) AS v RETURNING id",
                room,
                published_at,
                count,
            )
        )
    await db.execute(
        "INSERT INTO redis_primaries (identity, generation, seen_at, replay_from, replay_to) "
        "VALUES ('new', 1, now(), $1, $2)",
        day,
        day + timedelta(days=1),
    )

    async def unpublished() -> list[int]:
        return [
            r["id"]
            for r in await db.fetch(
                "SELECT id FROM room_events WHERE room_id = $1 AND published_at IS NULL ORDER BY id", room
            )
        ]

    try:
        # The oldest 2 rows, and the third marked with them: no batch splits a mark's rows, so none
        # leaves a room's earlier event published while a later one goes out again.
        assert await unmark_replay_batch(db, 2) == 3
        assert await unpublished() == [r["id"] for r in ids[1]]
        assert await db.fetchval("SELECT replay_from FROM redis_primaries") > at[1]
        assert await unmark_replay_batch(db, 2) == 2
        assert await unmark_replay_batch(db, 2) == 1  # the last: fewer than the limit, the window closes
        assert await db.fetchval("SELECT replay_from IS NULL AND replay_to IS NULL FROM redis_primaries")
        assert await unpublished() == [r["id"] for batch in ids[1:4] for r in batch]  # nothing outside
    finally:
        await db.execute("DELETE FROM room_events WHERE room_id = $1", room)


async def test_a_replay_batch_reads_the_published_index_in_order(db) -> None:
    # The suite's table is small, where a sort of the few rows in range is cheapest: with the scans
    # that return rows unordered priced out, a statement that must sort the window would still show a
    # Sort node. This one reads the published rows' index in published_at order and stops at the limit
    # (bench/replay_bench.py shows the plan chosen on a window of a million rows).
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(row[0] for row in await db.fetch("EXPLAIN " + publication.REPLAY_BATCH, 20_000))
    assert "Index Scan using room_events_published_at_idx on room_events" in plan, plan
    assert "Sort" not in plan, plan


async def test_a_change_that_waited_for_the_rooms_lock_does_not_overtake_the_change_it_waited_for(
    db, database_url, client, host
) -> None:
    """Two changes of one room at once: the second waits for the row lock while the first commits its
    event, unpublished yet. The second must then leave its own event to the relay (publish_now false),
    which publishes both in order; publishing it at once could put it on the stream before the first."""
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    caller = uuid.UUID(host["X-User-Id"])
    await eventually(lambda: _all_marked(db, code), 10, "the create's event marked published")
    first = await asyncpg.connect(database_url, timeout=10)
    second = await asyncpg.connect(database_url, timeout=10)
    try:
        async with first.transaction():
            made = await update_room(first, code, caller, RoomChange(max_participants=3), bounds=BOUNDS)  # type: ignore[arg-type]
            assert isinstance(made, Changed)
            assert made.publish_now
            waiting = asyncio.create_task(
                update_room(second, code, caller, RoomChange(max_participants=2), bounds=BOUNDS)  # type: ignore[arg-type]
            )

            async def blocked() -> bool:
                query = "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted"
                return bool(await db.fetchval(query, second.get_server_pid()))

            await eventually(blocked, 10, "the second change waiting for the room's lock")
        after = await asyncio.wait_for(waiting, 10)  # the first has committed: its event waits unpublished
        assert isinstance(after, Changed)
        assert after.room.version == made.room.version + 1
        assert not after.publish_now, "the later change would be published before the earlier one"
    finally:
        await first.close()
        await second.close()
        await db.execute("UPDATE room_events SET published_at = now() WHERE room_id = $1", code)  # for later relays


async def test_a_start_moved_while_the_start_job_held_the_room_is_refused(db, database_url, client, host) -> None:
    """A PATCH of the start that began before the room's start, but waited for the lock of the job
    starting it, must find it started (409 room_started): its own clock read a moment before the start,
    and moving the start of a room whose start was announced would contradict the event."""
    starts_at = datetime.now(UTC) + timedelta(seconds=1.5)
    code = (await client.post("/rooms", headers=host, json={"startsAt": starts_at.isoformat()})).json()["roomId"]
    caller = uuid.UUID(host["X-User-Id"])
    job = await asyncpg.connect(database_url, timeout=10)
    patch = await asyncpg.connect(database_url, timeout=10)
    try:
        async with job.transaction():
            await job.execute("SELECT 1 FROM meetings WHERE room_id = $1 FOR UPDATE", code)  # the job's lock
            later = RoomChange(starts_at=starts_at + timedelta(hours=1))
            waiting = asyncio.create_task(update_room(patch, code, caller, later, bounds=BOUNDS))  # type: ignore[arg-type]

            async def blocked() -> bool:
                query = "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted"
                return bool(await db.fetchval(query, patch.get_server_pid()))

            await eventually(blocked, 10, "the PATCH waiting for the room's lock")
            assert datetime.now(UTC) < starts_at, "the PATCH must begin before the start: lengthen the lead"

            async def started() -> bool:
                return datetime.now(UTC) > starts_at

            await eventually(started, 10, "the room's start")
            # What the start job's statement does to the row (common/db/lifecycle.py).
            await job.execute("UPDATE meetings SET started = true, version = version + 1 WHERE room_id = $1", code)
        refused = await asyncio.wait_for(waiting, 10)
        assert isinstance(refused, Refused), refused
        assert refused.reason is Refusal.ROOM_STARTED
    finally:
        await job.close()
        await patch.close()


# Bounds of a start or end move (these changes move neither).
BOUNDS = ScheduleBounds(longest=86400, furthest_ahead=86400, past_skew=60, end_notice=10)


async def _all_marked(db: asyncpg.Connection, code: str) -> bool:
    query = "SELECT count(*) FROM room_events WHERE room_id = $1 AND published_at IS NULL"
    return await db.fetchval(query, code) == 0
