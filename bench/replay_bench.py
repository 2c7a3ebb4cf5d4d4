"""Replay benchmark: what one batch of a replay window costs, for a small window and a large one.

Run from the repository root with the project's virtualenv, against a Postgres server:

    .venv/bin/python bench/replay_bench.py postgresql://postgres@127.0.0.1:5432/postgres

It creates a scratch database of its own (dropped afterwards), migrates it, fills `room_events` with
published rows (2,000,000 over the last 200 s: the peak event rate, marked 500 at a time as the relay
marks), and for each window (the last 20,000 rows, the last 1,000,000) records a change of primaries
and times the replay's batch statement of 20,000 rows, each run in a transaction rolled back, so each
sees the whole window. It prints the medians and the plan. The figure should not grow with the window
(docs/scaling.md records a run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg

from common.db import publication
from roomservice.embedded import ensure_database
from roomservice.migrate import migrate

_BATCH = 20_000
_RUNS = 7


async def fill(conn: asyncpg.Connection, rows: int) -> None:
    """`rows` events published over the last rows / 10,000 seconds (the peak event rate), 500 a mark."""
    await conn.execute(
        """
        INSERT INTO room_events (type, room_id, version, data, published_at)
        SELECT 'room.created', 'r' || i, 1, '{}',
               now() - make_interval(secs => $1 / 10000.0) + make_interval(secs => (i / 500) * 500 / 10000.0)
        FROM generate_series(0, $1 - 1) AS i
        """,
        rows,
    )
    await conn.execute("VACUUM ANALYZE room_events")


async def time_batch(conn: asyncpg.Connection, window: int) -> tuple[float, int]:
    """The median time of one batch of a window of the last `window` rows, in ms, and its size."""
    times, unmarked = [], 0
    for _ in range(_RUNS):
        tx = conn.transaction()
        await tx.start()
        # The primaries changed just now; the window holds the last `window` rows.
        await conn.execute(
            "INSERT INTO redis_primaries (identity, generation, seen_at, replay_from, replay_to) "
            "SELECT 'new', 1, now(), last - make_interval(secs => $1 / 10000.0), last "
            "FROM (SELECT max(published_at) + interval '1 microsecond' AS last FROM room_events) AS newest",
            window,
        )
        started = time.perf_counter()
        unmarked = await conn.fetchval(publication.REPLAY_BATCH, _BATCH)
        times.append((time.perf_counter() - started) * 1000)
        await tx.rollback()  # each run sees the whole window
    return statistics.median(times), unmarked


async def measure(server_url: str, rows: int, windows: list[int]) -> None:
    name = f"replay_bench_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(server_url, name)
    try:
        await migrate(url)
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await fill(conn, rows)
            for window in windows:
                median, unmarked = await time_batch(conn, window)
                print(
                    f"{rows:,} rows, window {window:>9,}: batch of {unmarked:,} in {median:7.1f} ms (median of {_RUNS})"
                )
            plan = await conn.fetch("EXPLAIN " + publication.REPLAY_BATCH, _BATCH)
            print("\n".join("    " + row[0] for row in plan))
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(server_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server_url", help="a Postgres server; the scratch databases are made and dropped on it")
    parser.add_argument("--rows", type=int, default=2_000_000, help="published rows in the outbox")
    parser.add_argument("--windows", default="20000,1000000", help="window sizes in rows, comma-separated")
    args = parser.parse_args()
    await measure(args.server_url, args.rows, [int(w) for w in args.windows.split(",")])


if __name__ == "__main__":
    asyncio.run(main())
