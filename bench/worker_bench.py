"""Worker benchmark: history events recorded per second, and room keys restored per second after a flush.

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/worker_bench.py                      # 100k events; sweeps of 100k and 1M rooms

It starts its own embedded Postgres and Valkey (bench/scratch.py), so it touches no other data.
The sweeps run in child processes so that each one's peak memory (max RSS) is its own: the figure
should not grow with the number of rooms. docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as redis
from scratch import scratch_servers

from common.environment import load_settings
from common.rooms.events import RoomEvent, RoomEventData, encode_data, stream_fields
from common.settings import Settings
from worker.history import HistoryConsumer
from worker.jobs.cache import sweep_room_cache
from worker.resources import worker_resources

# Ten letters from a row number i (base 26), dashed like a room code: every row gets a distinct code.
_LETTERS = [f"chr(97 + (i::bigint / {26**k} % 26)::int)" for k in range(10)]
_CODE_SQL = " || ".join([*_LETTERS[:3], "'-'", *_LETTERS[3:7], "'-'", *_LETTERS[7:]])


async def fill_stream(client: redis.Redis, stream: str, count: int) -> None:
    now = datetime.now(UTC)
    for start in range(0, count, 5000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(5000, count - start)):
            room = RoomEventData(
                id=uuid.uuid4(),
                room_id="abc-defg-hij",
                host_id=uuid.uuid4(),
                max_participants=4,
                created_at=now,
                expires_at=now + timedelta(days=1),
                version=1,
            )
            event = RoomEvent(
                type="room.created", event_id=uuid.uuid4(), room_id=room.room_id, occurred_at=now, version=1, data=room
            )
            pipe.xadd(stream, stream_fields(event, encode_data(event)))  # type: ignore[arg-type]
        await pipe.execute()


async def bench_consumer(settings: Settings, count: int) -> dict[str, float]:
    async with worker_resources(settings) as res:
        await fill_stream(res.redis, settings.stream_name, count)
        consumer = HistoryConsumer(res, name="bench", block_ms=10)
        await consumer.ensure_group()
        started = time.perf_counter()
        handled = 0
        while entries := await consumer.read(own_backlog=False):
            await consumer.handle(entries)
            handled += len(entries)
        seconds = time.perf_counter() - started
    return {"events": handled, "seconds": round(seconds, 2), "events_per_second": round(handled / seconds)}


async def insert_rooms(database_url: str, count: int) -> None:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute("TRUNCATE meetings CASCADE")
        await conn.execute(
            f"""
            INSERT INTO meetings (room_id, host_id, expires_at)
            SELECT {_CODE_SQL}, gen_random_uuid(), now() + interval '1 day' FROM generate_series(0, $1 - 1) AS i
            """,
            count,
        )
        await conn.execute("ANALYZE meetings")
    finally:
        await conn.close()


async def sweep_child() -> None:
    """In a child process: one sweep over an empty cache; print what it did and its peak memory."""
    settings = load_settings(os.environ)
    async with worker_resources(settings) as res:
        await res.redis.flushdb()  # the bench's own embedded server
        started = time.perf_counter()
        restored = await sweep_room_cache({"resources": res})
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"restored": restored, "seconds": round(seconds, 2), "rooms_per_second": round(restored / seconds),
                      "peak_rss_mb": round(peak_mb, 1)}))  # fmt: skip


def run_sweep(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--sweep-child"], env=env, capture_output=True, text=True, timeout=900, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--sweep-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_child:
        asyncio.run(sweep_child())
        return

    with scratch_servers() as settings:
        consumer = asyncio.run(bench_consumer(settings, args.events))
        print(f"history consumer: {consumer['events']} events in {consumer['seconds']} s "
              f"= {consumer['events_per_second']} events/s (batch {settings.consumer_batch_size})")  # fmt: skip

        env = {**os.environ, "ROOMS_DATABASE_URL": settings.database_url, "ROOMS_REDIS_URL": settings.redis_url}
        for rooms in args.rooms:
            asyncio.run(insert_rooms(settings.database_url, rooms))
            sweep = run_sweep(env)
            print(f"cache sweep: {sweep['restored']} rooms restored in {sweep['seconds']} s "
                  f"= {sweep['rooms_per_second']} rooms/s, worker peak RSS {sweep['peak_rss_mb']} MB "
                  f"(batch {settings.sweep_batch_size})")  # fmt: skip


if __name__ == "__main__":
    main()
