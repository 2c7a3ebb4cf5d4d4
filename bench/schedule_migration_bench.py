"""Schedule migration benchmark: what migrations 0013 (the start columns) and 0014 (the index of rooms
waiting to start) cost on a large `meetings`, and how long reads and creates wait meanwhile.

Run from the repository root with the project's virtualenv, against a Postgres server:

    .venv/bin/python bench/schedule_migration_bench.py postgresql://postgres@127.0.0.1:5432/postgres --rooms 1000000

It creates a scratch database of its own (dropped afterwards), applies the migrations before 0013 and
fills `meetings` with `--rooms` rooms as bench/prune_bench.py does (half ended long ago with their
history, a quarter ended lately, a quarter live). Then, while connections read rooms by code (the
statement of GET /rooms/{roomId}) and create rooms one by one (the create statement), it runs each
file `--trials` times in a transaction it rolls back, then once for good through the migrator, 0013
first. The reads and creates are those of the release before 0013, which is what runs while
`roomservice migrate` does (docs/operations.md: migrate, then the new processes).

For each run it prints how long the file took and the longest read and create among those that
overlapped it (what they waited), beside their figures before; whether 0013 rewrote the table
(`pg_relation_filenode('meetings')` before and after) and the size of 0014's index.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from prune_bench import fill

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.db.idempotency import LIVE_KEY
from common.db.publication import GENERATION
from common.rooms.codes import generate_room_code
from roomservice.embedded import ensure_database
from roomservice.migrate import Migration, available_migrations, migrate

# The statements of the release before 0013 (common/db/rooms.py then): what serves during the migration.
_COLUMNS = "id, room_id, host_id, max_participants, created_at, expires_at, version, metadata, cohost_ids"
_GET = f"""SELECT {_COLUMNS}, is_active AND expires_at > now() AS live, room_event_data(meetings) AS data
FROM meetings WHERE room_id = $1"""
_CREATE = f"""
WITH new AS (
    SELECT * FROM unnest(
        $1::text[], $2::uuid[], $3::int[], $4::float8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]
    ) AS new (room_id, host_id, max_participants, ttl_seconds, key, request_hash, traceparent, metadata, cohost_ids)
), claim AS (
    INSERT INTO idempotency_keys AS k (host_id, key, request_hash, room_id)
    SELECT host_id, key, request_hash, room_id FROM new WHERE key IS NOT NULL
    ORDER BY host_id, key
    ON CONFLICT (host_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, room_id = excluded.room_id, created_at = now()
        WHERE NOT ({LIVE_KEY})
    RETURNING k.room_id
), room AS (
    INSERT INTO meetings (room_id, host_id, max_participants, expires_at, metadata, cohost_ids)
    SELECT room_id, host_id, max_participants, now() + make_interval(secs => ttl_seconds), metadata::jsonb,
           coalesce(cohost_ids::uuid[], '{{}}')
    FROM new
    WHERE key IS NULL OR room_id IN (SELECT room_id FROM claim)
    RETURNING {_COLUMNS}, room_event_data(meetings) AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, occurred_at, data, traceparent)
    SELECT 'room.created', room.room_id, version, created_at, data, new.traceparent
    FROM room JOIN new ON new.room_id = room.room_id
    RETURNING id AS outbox_id, event_id, type, occurred_at, traceparent, room_id AS event_room_id
)
SELECT room.*, event.*, {GENERATION} AS generation FROM room JOIN event ON event.event_room_id = room.room_id
"""


@dataclass
class Load:
    """Reads and creates, each as (kind, started, ended, error), on the perf_counter clock."""

    ops: list[tuple[str, float, float, str | None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, conn: asyncpg.Connection, kind: str, codes: list[str], pause: float) -> None:
        while not self.stop.is_set():
            error = None
            started = time.perf_counter()
            try:
                if kind == "read":
                    await conn.fetchrow(_GET, random.choice(codes))
                else:
                    await conn.fetch(_CREATE, [generate_room_code()], [uuid.uuid4()], [4], [3600.0], *[None] * 5)
            except asyncpg.PostgresError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.ops.append((kind, started, time.perf_counter(), error))
            await asyncio.sleep(pause)

    def during(self, kind: str, start: float, end: float) -> list[tuple[float, str | None]]:
        """The latencies (and errors) of the operations of `kind` that overlapped [start, end]."""
        return [(e - s, error) for k, s, e, error in self.ops if k == kind and e >= start and s <= end]


def summary(values: list[tuple[float, str | None]]) -> str:
    latencies = sorted(latency for latency, _ in values)
    if not latencies:
        return "none"
    errors = sorted({error for _, error in values if error})
    text = (
        f"{len(latencies)}, median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    return text + (f", errors: {'; '.join(errors)}" if errors else "")


async def trial(url: str, migration: Migration) -> float:
    """Run one file as the migrator does (its lock wait, one transaction), rolled back; its seconds."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET lock_timeout = '5s'")
        started = time.perf_counter()
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(migration.sql)
            return time.perf_counter() - started
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


async def relation(conn: asyncpg.Connection, name: str) -> tuple[int, int]:
    """The relation's file node and size in bytes."""
    row = await conn.fetchrow("SELECT pg_relation_filenode($1::regclass), pg_relation_size($1::regclass)", name)
    assert row is not None
    return row[0], row[1]


async def measure(url: str, conn: asyncpg.Connection, load: Load, migration: Migration, trials: int) -> None:
    """Each trial of the file, then the file for good, with the reads and creates that overlapped each."""
    upto = [m for m in available_migrations() if m.name <= migration.name]
    for attempt in range(trials + 1):
        await asyncio.sleep(2)  # the operations of one run apart from the next
        started = time.perf_counter()
        if attempt < trials:
            label, took = f"rolled back, trial {attempt + 1}", await trial(url, migration)
        else:
            await migrate(url, upto)
            label, took = "applied by the migrator", time.perf_counter() - started
        ended = time.perf_counter()
        print(f"  {migration.name} ({label}): {took * 1000:.1f} ms")
        for kind in ("read", "create"):
            print(f"    {kind}s overlapping: {summary(load.during(kind, started, ended))}")


async def main(server: str, rooms: int, trials: int, readers: int, creators: int) -> None:
    name = f"roomservice_schedule_migration_bench_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(server, name)
    try:
        by_name = {m.name[:4]: m for m in available_migrations()}
        await migrate(url, [m for m in available_migrations() if m.name < "0013"])
        conn = await asyncpg.connect(url)
        workers = [await asyncpg.connect(url) for _ in range(readers + creators)]
        try:
            started = time.perf_counter()
            await fill(conn, rooms)
            await conn.execute("CHECKPOINT")
            codes = [r[0] for r in await conn.fetch("SELECT room_id FROM meetings TABLESAMPLE SYSTEM (1) LIMIT 20000")]
            node, size = await relation(conn, "meetings")
            print(f"filled {rooms:,} rooms in {time.perf_counter() - started:.0f} s; meetings {size / 2**20:.0f} MiB")
            load = Load()
            running = [
                asyncio.create_task(
                    load.run(w, "read" if i < readers else "create", codes, 0.002 if i < readers else 0.005)
                )
                for i, w in enumerate(workers)
            ]
            await asyncio.sleep(5)
            print("  before:")
            for kind in ("read", "create"):
                print(f"    {kind}s: {summary(load.during(kind, 0, time.perf_counter()))}")
            await measure(url, conn, load, by_name["0013"], trials)
            after, size_after = await relation(conn, "meetings")
            rewrite = "rewritten" if after != node else "not rewritten"
            print(f"  meetings file node {node} before 0013, {after} after: {rewrite}; {size_after / 2**20:.0f} MiB")
            await measure(url, conn, load, by_name["0014"], trials)
            final, _ = await relation(conn, "meetings")
            _, index = await relation(conn, "meetings_waiting_start_idx")
            waiting = await conn.fetchval("SELECT count(*) FROM meetings WHERE is_active AND NOT started")
            print(f"  meetings_waiting_start_idx: {index:,} bytes ({waiting} rooms waiting); file node {final}")
            await asyncio.sleep(2)
            load.stop.set()
            await asyncio.gather(*running)
        finally:
            await conn.close()
            for w in workers:
                await w.close()
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", help="a Postgres server URL; the bench makes and drops a database of its own")
    parser.add_argument("--rooms", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=3, help="rolled-back runs of each file before applying it")
    parser.add_argument("--readers", type=int, default=2, help="connections reading rooms by code")
    parser.add_argument("--creators", type=int, default=2, help="connections creating rooms one by one")
    args = parser.parse_args()
    asyncio.run(main(args.server, args.rooms, args.trials, args.readers, args.creators))
