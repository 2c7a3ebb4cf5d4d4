"""Retention benchmark: how fast the pruning deletes ended rooms from a large table, how long each of its
batches holds its locks, and whether creates stall meanwhile; and what migration 0012 costs there.

Run from the repository root with the project's virtualenv, against a Postgres server:

    .venv/bin/python bench/prune_bench.py postgresql://postgres@127.0.0.1:5432/postgres --rooms 10000000

It creates a scratch database of its own (dropped afterwards), applies the migrations before 0012, and
fills `meetings` with `--rooms` rooms: half ended more than 90 days ago, each with its two history rows
(created, ended), the rest ended lately or live. Then, while one connection creates rooms one by one
with the service's own statement (a write of every kind the pruning could block), it applies 0012 (its
index builds hold SHARE on the tables: creates wait), and then runs the pruning's batch statement until
nothing is left or `--seconds` have passed. It prints rows deleted per second, the longest batch (its
locks last no longer: each batch is one statement, one transaction) and the creates' latencies before,
during the migration and during the pruning. docs/scaling.md records a run.

    .venv/bin/python bench/prune_bench.py postgresql://postgres@127.0.0.1:5432/postgres --trigger-cost 5000

measures instead what the check of retired codes (migration 0012's trigger) adds to a create.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.db.retention import prune_ended_rooms
from common.db.rooms import NewRoom, create_rooms
from common.rooms.codes import generate_room_code
from roomservice.embedded import ensure_database
from roomservice.migrate import available_migrations, migrate
from worker.jobs.prune import ROOM_BATCH

_RETENTION = 90 * 86400.0

# The i-th code: the ten base-26 digits of i, so every room of the fill has its own.
_CODE = " || ".join(
    ("'-' || " if k in (3, 7) else "") + f"chr(97 + ((i / {26**k}::bigint) % 26)::int)" for k in range(10)
)


async def fill(conn: asyncpg.Connection, rooms: int) -> None:
    """Half the rooms ended 91 to 191 days ago, oldest first; a quarter ended lately; a quarter live."""
    old = rooms // 2
    await conn.execute(
        f"""
        INSERT INTO meetings (room_id, host_id, created_at, is_active, expires_at)
        SELECT {_CODE}, gen_random_uuid(), e - interval '1 day', false, e
        FROM generate_series(0, $1 - 1) AS i,
             LATERAL (SELECT now() - interval '191 days' + i * (interval '100 days' / $1)) AS t(e)
        """,
        old,
    )
    await conn.execute(
        f"""
        INSERT INTO meetings (room_id, host_id, created_at, is_active, expires_at)
        SELECT {_CODE}, gen_random_uuid(), now() - interval '2 days', i % 2 = 0,
               CASE WHEN i % 2 = 0 THEN now() + interval '1 day' ELSE now() - interval '1 day' END
        FROM generate_series($1, $2 - 1) AS i
        """,
        old,
        rooms,
    )
    for kind, at in (("room.created", "m.created_at"), ("room.ended", "m.expires_at")):
        await conn.execute(
            f"""
            INSERT INTO room_history (event_id, room_id, type, version, occurred_at, data)
            SELECT gen_random_uuid(), m.room_id, '{kind}', 1, {at}, room_event_data(m)
            FROM meetings m WHERE NOT m.is_active AND m.expires_at < now() - interval '90 days'
            """
        )
    await conn.execute("VACUUM ANALYZE")


class Creates:
    """Rooms created one by one, each timed, until stopped; the latencies of each phase apart."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {}
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            await create_rooms(self._conn, [NewRoom(generate_room_code(), uuid.uuid4(), 4, 3600)])  # type: ignore[arg-type]
            self.latencies.setdefault(self.phase, []).append(time.perf_counter() - started)
            await asyncio.sleep(0.005)  # about 150 creates a second: a steady stream, not a flood

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> None:
        for phase, values in self.latencies.items():
            values.sort()
            p99 = values[int(len(values) * 0.99)]
            print(
                f"  creates {phase}: {len(values)}, median {statistics.median(values) * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms"
            )


async def prune(conn: asyncpg.Connection, seconds: float) -> None:
    after, rooms, rows, batches = datetime.min.replace(tzinfo=UTC), 0, 0, []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch_started = time.perf_counter()
        batch = await prune_ended_rooms(conn, _RETENTION, after, ROOM_BATCH)  # type: ignore[arg-type]
        batches.append(time.perf_counter() - batch_started)
        rooms += batch.rooms
        rows += batch.rooms + batch.history + batch.events + batch.keys
        if batch.last_expiry is None or batch.rooms < ROOM_BATCH:
            break
        after = batch.last_expiry
    took = time.perf_counter() - started
    print(
        f"  pruned {rooms} rooms, {rows} rows in {took:.1f} s: {rooms / took:,.0f} rooms/s, {rows / took:,.0f} rows/s; "
        f"{len(batches)} batches of {ROOM_BATCH} rooms, median {statistics.median(batches) * 1000:.0f} ms, "
        f"longest {max(batches) * 1000:.0f} ms"
    )


async def trigger_cost(server: str, creates: int, rounds: int = 4) -> None:
    """The cost per create of the retired-code check: creates one by one with the trigger and without,
    alternating, on a table already holding `creates` retired codes."""
    name = f"roomservice_prune_bench_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(server, name)
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                f"INSERT INTO retired_room_codes SELECT {_CODE} FROM generate_series(0, $1 - 1) AS i",
                creates,
            )
            timings: dict[str, list[float]] = {"with the check": [], "without": []}
            for _ in range(rounds):
                for label, values in timings.items():
                    if label == "without":
                        await conn.execute("ALTER TABLE meetings DISABLE TRIGGER meetings_refuse_retired_codes")
                    started = time.perf_counter()
                    for _ in range(creates):
                        room = NewRoom(generate_room_code(), uuid.uuid4(), 4, 3600)
                        await create_rooms(conn, [room])  # type: ignore[arg-type]
                    values.append((time.perf_counter() - started) / creates)
                    await conn.execute("ALTER TABLE meetings ENABLE TRIGGER meetings_refuse_retired_codes")
            for label, values in timings.items():
                print(f"  create {label}: median {statistics.median(values) * 1e6:.0f} µs over {rounds} rounds")
        finally:
            await conn.close()
    finally:
        await _drop(server, name)


async def _drop(server: str, name: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main(server: str, rooms: int, seconds: float) -> None:
    name = f"roomservice_prune_bench_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(server, name)
    try:
        before, retention = [m for m in available_migrations() if m.name < "0012"], available_migrations()
        await migrate(url, before)
        conn = await asyncpg.connect(url)
        creating = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            await fill(conn, rooms)
            print(f"filled {rooms:,} rooms in {time.perf_counter() - started:.0f} s")
            creates = Creates(creating)
            running = asyncio.create_task(creates.run())
            await asyncio.sleep(5)
            creates.phase = "during the migration"
            started = time.perf_counter()
            await migrate(url, retention)
            print(f"  migration 0012: {time.perf_counter() - started:.1f} s")
            creates.phase = "during the pruning"
            await prune(conn, seconds)
            creates.stop()
            await running
            creates.report()
        finally:
            await conn.close()
            await creating.close()
    finally:
        await _drop(server, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", help="a Postgres server URL; the bench makes and drops a database of its own")
    parser.add_argument("--rooms", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop pruning after this long")
    parser.add_argument("--trigger-cost", type=int, metavar="CREATES", help="measure the retired-code check instead")
    args = parser.parse_args()
    if args.trigger_cost:
        asyncio.run(trigger_cost(args.server, args.trigger_cost))
    else:
        asyncio.run(main(args.server, args.rooms, args.seconds))
