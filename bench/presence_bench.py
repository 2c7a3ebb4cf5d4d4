"""Presence benchmark: how long the worker's presence pass (worker/jobs/presence.py) takes among 100k or 1M live rooms.

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/presence_bench.py                        # 100k and 1M live rooms, 10 % with people
    .venv/bin/python bench/presence_bench.py --rooms 100000 --occupied 0.2 --passes 3
    .venv/bin/python bench/presence_bench.py --redis-url redis://127.0.0.1:7000/0   # a server of your own

It starts its own embedded Postgres and Valkey (bench/scratch.py), so it touches no other data; with
--redis-url, that Redis instead of the Valkey (a server only the bench uses: it is flushed). The
rooms are rows generated in SQL, started now, with an unused timeout of 1800 s (the default: not due
while the bench runs) and an empty timeout of 0, so that no pass ends one and every room once used
stays visited, cached by the cache sweep. Passes are timed in each state the pass meets, each in a
child process so that its peak memory (max RSS) is its own:
- idle: nobody has ever joined and no timeout is due: the pass looks (a SCAN of Redis for session
  keys, a query of the database for due rooms) and finds nothing to check;
- started: a share of the rooms (--occupied) have 4 members each, admitted by join.lua: the pass
  records their sessions (`room_sessions` rows, `session.started` in the outbox);
- in progress: the same sessions again, their figures updated;
- ended: every member has left (leave.lua): the pass records the ended sessions (`session.ended`) and
  takes them off Redis;
- quiet: nothing changed since: checks again, with the sessions' rows in the database.
Each pass is split into the reads (Postgres: rooms by code, due rooms, ended rooms, the live count),
the SCAN steps (Redis), the check pipelines (Redis, redis-py's packing and parsing included), the
recording transactions (Postgres) and the rest (the worker's own Python), with the CPU
time of the worker, of the Redis server and of every Postgres process, and the server's own time per
EVALSHA presence.lua (INFO commandstats).
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
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import msgspec
from scratch import scratch_servers
from worker_bench import _CODE_SQL

from common.db import sessions as sessions_db
from common.environment import load_settings
from common.redis.guarded import GuardedRedis
from common.redis.keys import distinct_key, joined_key, participants_key, room_key, session_key
from common.settings import Settings
from common.signaling.contract import JOIN, LEAVE
from worker.jobs.cache import sweep_room_cache
from worker.jobs.presence import check_presence
from worker.resources import worker_resources

MEMBERS = 4
HEARTBEAT_MS = 3_600_000  # nobody's heartbeat lapses while the passes run
_TICKS = os.sysconf("SC_CLK_TCK")
_Call = TypeVar("_Call", bound=Callable[..., Awaitable[Any]])


async def insert_rooms(database_url: str, count: int) -> None:
    """`count` live rooms, started now, ending in a day, none ending by itself while the bench runs."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute("TRUNCATE meetings, room_events CASCADE")
        await conn.execute("UPDATE presence_progress SET ended_published = now()")
        await conn.execute(
            f"""
            INSERT INTO meetings (room_id, host_id, expires_at, empty_timeout_seconds, unused_timeout_seconds)
            SELECT {_CODE_SQL}, gen_random_uuid(), now() + interval '1 day', 0, 1800
            FROM generate_series(0, $1 - 1) AS i
            """,
            count,
        )
        await conn.execute("VACUUM ANALYZE meetings")
    finally:
        await conn.close()


async def cache_rooms(settings: Settings) -> float:
    """Every room's object in Redis, as the worker's sweep puts them; the sweep's seconds."""
    async with worker_resources(settings) as res:
        await res.redis.flushdb()  # the bench's own embedded server
        started = time.perf_counter()
        await sweep_room_cache({"resources": res})
        return time.perf_counter() - started


async def occupied_rooms(database_url: str, share: float) -> list[str]:
    """`share` of the rooms, spread evenly over the code order the pass walks."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch(
            """
            SELECT room_id FROM (SELECT room_id, row_number() OVER (ORDER BY room_id) AS n FROM meetings) r
            WHERE floor(n * $1::float8) > floor((n - 1) * $1::float8)
            """,
            share,
        )
    finally:
        await conn.close()
    return [row["room_id"] for row in rows]


async def people(settings: Settings, rooms: list[str], action: str) -> dict[str, Any]:
    """Members 0..3 of each room join (join.lua) or leave (leave.lua), pipelined, 250 rooms a pipeline."""
    script = JOIN if action == "join" else LEAVE
    async with worker_resources(settings) as res:
        client = res.redis
        sha = await client.script_load(script.source)
        before = (await client.info("memory"))["used_memory"]
        started = time.perf_counter()
        for first in range(0, len(rooms), 250):
            pipe = client.pipeline(transaction=False)
            for room in rooms[first : first + 250]:
                for member in range(MEMBERS):
                    someone = uuid.uuid5(uuid.NAMESPACE_URL, f"{room}/{member}").hex  # 32 characters
                    args = [someone, HEARTBEAT_MS] if action == "join" else [someone]
                    pipe.evalsha(sha, 2, room_key(room), participants_key(room), *args)
            for reply in await pipe.execute():
                if (reply[0] if action == "join" else reply) not in (b"admitted", 1):
                    raise RuntimeError(f"{action}.lua answered {reply!r}")
        seconds = time.perf_counter() - started
        after = (await client.info("memory"))["used_memory"]
        room = rooms[0]
        keys = {"session": session_key(room), "distinct": distinct_key(room), "joined": joined_key(room),
                "participants": participants_key(room)}  # fmt: skip
        usage = {name: await client.memory_usage(key) for name, key in keys.items()}
    return {"calls_per_second": round(len(rooms) * MEMBERS / seconds),
            "bytes_per_room": round((after - before) / max(len(rooms), 1)), "memory_usage": usage}  # fmt: skip


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # a backend that exited meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _postgres_pids(postmaster: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return [postmaster, *children]


def _timed(split: dict[str, float], name: str, call: _Call) -> _Call:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            split[name] += time.perf_counter() - started

    return cast(_Call, timed)


async def pass_child(label: str, passes: int) -> None:
    """In a child process: `passes` presence passes; a line of JSON for each."""
    split: dict[str, float] = defaultdict(float)
    # The pass looks these up at each call, so timing them here times the pass's own calls.
    for read in ("rooms_by_id", "due_rooms", "ended_rooms_since", "live_rooms"):
        setattr(sessions_db, read, _timed(split, "pg_read", getattr(sessions_db, read)))
    GuardedRedis.call = _timed(split, "scan", GuardedRedis.call)  # type: ignore[method-assign]  # the pass's SCAN steps
    sessions_db.record = _timed(split, "pg_write", sessions_db.record)
    GuardedRedis.pipeline_results = _timed(split, "redis", GuardedRedis.pipeline_results)  # type: ignore[method-assign]
    settings = load_settings(os.environ)
    async with worker_resources(settings) as res:
        valkey = int((await res.redis.info("server"))["process_id"])
        async with res.pool.acquire() as conn:
            data_directory = await conn.fetchval("SHOW data_directory")
        postmaster = int(Path(data_directory, "postmaster.pid").read_text().split()[0])
        for _ in range(passes):
            split.clear()
            await res.redis.config_resetstat()
            postgres = _postgres_pids(postmaster)
            own = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (_cpu_seconds([valkey]), _cpu_seconds(postgres))
            started = time.perf_counter()
            checked = await check_presence({"resources": res})
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            evalsha = (await res.redis.info("commandstats")).get("cmdstat_evalsha", {})
            parts = {name: round(split[name], 2) for name in ("pg_read", "scan", "redis", "pg_write")}
            print(json.dumps({
                "label": label, "checked": checked, "seconds": round(seconds, 2),
                "rooms_per_second": round(checked / seconds), **parts,
                "other": round(seconds - sum(split.values()), 2),
                "worker_cpu": round(after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime, 2),
                "redis_cpu": round(_cpu_seconds([valkey]) - cpu[0], 2),
                "postgres_cpu": round(_cpu_seconds(postgres) - cpu[1], 2),
                "evalsha_us": evalsha.get("usec_per_call", 0),
                "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
            }), flush=True)  # fmt: skip


def run_passes(env: dict[str, str], label: str, passes: int) -> None:
    out = subprocess.run(
        [sys.executable, __file__, "--pass-child", label, "--passes", str(passes)],
        env=env, capture_output=True, text=True, timeout=3600, check=True,
    )  # fmt: skip
    for line in out.stdout.strip().splitlines():
        p = json.loads(line)
        print(f"  {p['label']:<11} {p['checked']:>9,} rooms {p['seconds']:>7} s = {p['rooms_per_second']:>7,} rooms/s "
              f"| pg read {p['pg_read']} s, scan {p['scan']} s, checks {p['redis']} s, pg write {p['pg_write']} s, "
              f"other {p['other']} s "
              f"| CPU s: worker {p['worker_cpu']}, redis server {p['redis_cpu']}, postgres {p['postgres_cpu']} "
              f"| presence.lua {p['evalsha_us']} µs | peak RSS {p['peak_rss_mb']} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--occupied", type=float, default=0.1, help="share of rooms with 4 members (0 .. 1)")
    parser.add_argument("--passes", type=int, default=2, help="timed passes in each steady state")
    parser.add_argument("--redis-url", help="a Redis of the bench's own instead of the embedded Valkey (flushed)")
    parser.add_argument("--pass-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pass_child:
        asyncio.run(pass_child(args.pass_child, args.passes))
        return

    with scratch_servers() as scratch:
        settings = msgspec.structs.replace(scratch, redis_url=args.redis_url or scratch.redis_url)
        env = {**os.environ, "ROOMS_DATABASE_URL": settings.database_url, "ROOMS_REDIS_URL": settings.redis_url}
        for count in args.rooms:
            started = time.perf_counter()
            asyncio.run(insert_rooms(settings.database_url, count))
            print(f"{count:,} live rooms: inserted in {time.perf_counter() - started:.1f} s, "
                  f"cached by the sweep in {asyncio.run(cache_rooms(settings)):.1f} s")  # fmt: skip
            run_passes(env, "idle", args.passes)
            rooms = asyncio.run(occupied_rooms(settings.database_url, args.occupied))
            if rooms:
                joined = asyncio.run(people(settings, rooms, "join"))
                print(f"  {len(rooms):,} rooms with {MEMBERS} members: join.lua {joined['calls_per_second']:,}/s "
                      f"pipelined; used_memory +{joined['bytes_per_room']} B a room; MEMORY USAGE of one room's "
                      f"keys {joined['memory_usage']}")  # fmt: skip
                run_passes(env, "started", 1)
                run_passes(env, "in progress", args.passes)
                left = asyncio.run(people(settings, rooms, "leave"))
                print(f"  all left: leave.lua {left['calls_per_second']:,}/s pipelined")
                run_passes(env, "ended", 1)
                run_passes(env, "quiet", args.passes)


if __name__ == "__main__":
    main()
