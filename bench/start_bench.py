"""Start benchmark: how late `room.started` reaches the stream when many booked rooms start at once.

Run from the repository root with the project's virtualenv, against a Postgres server and a Redis
index given to the bench alone:

    .venv/bin/python bench/start_bench.py postgresql://postgres@127.0.0.1:5432/postgres \\
        redis://127.0.0.1:6379/12 --rooms 1000 10000 50000

It creates a scratch database of its own (dropped afterwards) and migrates it. The Redis index must be
empty or carry the bench's mark from an earlier run: the bench marks it, and empties it only then
(at the start and at the end). For each round it starts a real worker (`roomservice worker`, a stream
of its own), waits until its start job runs, then inserts the round's rooms straight into `meetings`,
all booked for the same whole second T a few seconds ahead (meetings booked for the top of the hour),
and reads the stream from before T. Each `room.started` entry's lag is its entry id's time (Redis
time, when the stream took it) less T. It prints the lag's p50, p99 and max, when the first batch
was written (the event's `occurredAt`: the job's transaction), and how long until all were announced.
A fresh worker each round: arq polls its queue every `poll_delay` from the worker's start, so each
round draws its own phase.

`--create-rate` adds creates through the service's create statement meanwhile (the relay publishes
their `room.created`); `--workers` runs several worker processes, as replicas. `--poll-delay`,
`--cron-microsecond`, `--batch` and `--parallel` try the worker with other arq or job settings: the
worker then runs through this file (`--worker-child`), which changes those before running the same
`roomservice worker`; the service's files are not touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.db.rooms import NewRoom, create_rooms
from common.rooms.codes import generate_room_code
from roomservice.embedded import ensure_database
from roomservice.migrate import migrate

OWNER_KEY = "bench:owner"
OWNER_MARK = "scratch data of bench/start_bench.py"
# Beyond the relay's grace (2 s) and its period (1 s): what it publishes again has arrived by then.
_SETTLE = 4.0

_BOOK = """
INSERT INTO meetings (room_id, host_id, max_participants, starts_at, expires_at, started)
SELECT code, gen_random_uuid(), 4, $2::timestamptz, $2::timestamptz + interval '1 hour', false
FROM unnest($1::text[]) AS code
"""


def code_of(number: int) -> str:
    """The room code of `number` (ten base-26 letters, dashed): distinct numbers, distinct codes."""
    letters = []
    for _ in range(10):
        number, digit = divmod(number, 26)
        letters.append(chr(97 + digit))
    text = "".join(letters)
    return f"{text[:3]}-{text[3:7]}-{text[7:]}"


@contextlib.asynccontextmanager
async def marked_redis(url: str) -> AsyncIterator[redis.Redis]:
    """A client on the bench's Redis index: emptied now and at the end, only if it is empty or marked."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    if await client.dbsize() and await client.get(OWNER_KEY) != OWNER_MARK.encode():
        await client.aclose()
        raise RuntimeError(f"{url} holds keys the bench did not write; not touching it")
    await client.flushdb()
    await client.set(OWNER_KEY, OWNER_MARK)
    try:
        yield client
    finally:
        if await client.get(OWNER_KEY) == OWNER_MARK.encode():
            await client.flushdb()
        await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(
    args: argparse.Namespace, database_url: str, stream: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMS_")}
    env.update(ROOMS_DATABASE_URL=database_url, ROOMS_REDIS_URL=args.redis_url, ROOMS_STREAM_NAME=stream)
    env.update(ROOMS_WORKER_METRICS_PORT=str(port))
    tuned = [f"--{name.replace('_', '-')}={value}" for name, value in tuning(args).items()]
    if tuned:
        command = [sys.executable, __file__, "--worker-child", *tuned]
    else:
        roomservice = shutil.which("roomservice", path=str(Path(sys.executable).parent))
        if roomservice is None:
            raise RuntimeError(
                "roomservice is not installed in this virtualenv; run with the project's .venv/bin/python"
            )
        command = [roomservice, "worker"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def tuning(args: argparse.Namespace) -> dict[str, float]:
    names = ("poll_delay", "cron_microsecond", "batch", "parallel")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


async def wait_for_start_job(worker: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the worker's start job has run once: its clock is going."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            )
            for family in text_string_to_metric_families(text.decode()):
                for sample in family.samples:
                    if sample.name == "roomservice_worker_job_runs_total" and sample.labels.get("job") == "start_rooms":
                        return
        await asyncio.sleep(0.2)
    raise RuntimeError("the worker's start job did not run within 60 s")


async def create_load(pool: asyncpg.Pool, rate: float, stop: asyncio.Event) -> int:
    """Rooms created one by one with the service's statement at about `rate` a second until `stop`."""
    created, started = 0, time.monotonic()
    while not stop.is_set():
        async with pool.acquire() as conn:
            await create_rooms(conn, [NewRoom(generate_room_code(), uuid.uuid4(), 4, 3600)])
        created += 1
        await asyncio.sleep(max(0.0, started + created / rate - time.monotonic()))
    return created


async def read_starts(
    client: redis.Redis, stream: str, after: str, codes: set[str], within: float
) -> tuple[dict[str, tuple[int, str]], int]:
    """Each room's first `room.started` as (entry time in ms, occurredAt), read from the stream after
    `after`; and how many entries repeated one (same eventId: the relay publishing an event again
    whose mark came later than its grace, which consumers drop), counted until `_SETTLE` seconds after
    the last room's first. Two events starting one room stop the bench."""
    seen: dict[str, tuple[int, str, bytes]] = {}
    repeats = 0
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if len(seen) == len(codes):
            deadline = min(deadline, time.monotonic() + _SETTLE)
        for _, entries in await client.xread({stream: after}, count=10_000, block=1000) or []:
            for entry_id, fields in entries:
                after = entry_id.decode()
                room = fields[b"roomId"].decode()
                if fields[b"type"] != b"room.started" or room not in codes:
                    continue
                if room not in seen:
                    seen[room] = (int(after.split("-")[0]), fields[b"occurredAt"].decode(), fields[b"eventId"])
                elif seen[room][2] == fields[b"eventId"]:
                    repeats += 1
                else:
                    raise RuntimeError(f"two room.started events for {room}")
    return {room: (ms, at) for room, (ms, at, _) in seen.items()}, repeats


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


async def one_round(args: argparse.Namespace, url: str, client: redis.Redis, rooms: int, first: int, log: Path) -> None:
    stream = f"bench:start:{uuid.uuid4().hex[:8]}:events"
    ports = [free_port() for _ in range(args.workers)]
    workers = [start_worker(args, url, stream, port, log) for port in ports]
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    stop_load = asyncio.Event()
    try:
        for worker, port in zip(workers, ports, strict=True):
            await wait_for_start_job(worker, port, log)
        load = asyncio.create_task(create_load(pool, args.create_rate, stop_load)) if args.create_rate else None
        after = (await client.xrevrange(stream, count=1) or [(b"0-0", {})])[0][0].decode()
        lead = args.lead if args.lead is not None else 5 + rooms / 10_000
        start = math.ceil(time.time() + lead) + args.start_offset_ms / 1000
        codes = [code_of(n) for n in range(first, first + rooms)]
        inserting = time.time()
        await pool.execute(_BOOK, codes, datetime.fromtimestamp(start, UTC))
        await pool.execute("ANALYZE meetings")
        if time.time() > start - 1:
            raise RuntimeError(f"inserting took {time.time() - inserting:.1f} s, too close to the start: raise --lead")
        seen, repeats = await read_starts(client, stream, after, set(codes), lead + 60 + rooms / 500)
        stop_load.set()
        created = await load if load else 0
        waiting = await pool.fetchval("SELECT count(*) FROM meetings WHERE is_active AND NOT started")
    finally:
        stop_load.set()
        await pool.close()
        for worker in workers:
            stop_worker(worker)
    if len(seen) < rooms:
        raise RuntimeError(f"only {len(seen)} of {rooms} room.started arrived ({waiting} rooms still waiting)")
    start_ms = start * 1000
    lags = sorted((ms - start_ms) / 1000 for ms, _ in seen.values())
    written = sorted({datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() - start for _, at in seen.values()})
    print(
        f"  {rooms:>6,} rooms: lag p50 {quantile(lags, 0.5):.3f} s, p99 {quantile(lags, 0.99):.3f} s, "
        f"max {lags[-1]:.3f} s; first batch written {written[0]:.3f} s after the start, "
        f"{len(written)} distinct write times; all announced {lags[-1]:.3f} s after the start "
        f"({rooms / (lags[-1] - written[0]):,.0f} rooms/s after the first write), "
        f"{'met' if lags[-1] <= 2 else 'MISSED'} (2 s)"
        + (f"; {repeats} published again by the relay" if repeats else "")
        + (f"; {created} creates meanwhile" if args.create_rate else "")
    )


async def main(args: argparse.Namespace) -> None:
    name = f"roomservice_start_bench_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(args.server, name)
    log = Path(tempfile.mkdtemp(prefix="start-bench-")) / "worker.log"
    try:
        await migrate(url)
        async with marked_redis(args.redis_url) as client:
            print(f"starts at a whole second + {args.start_offset_ms} ms; {args.workers} worker(s) "
                  f"{tuning(args) or 'as shipped'}; "
                  f"creates {args.create_rate}/s; worker log {log}", flush=True)  # fmt: skip
            first = 0
            for rooms in args.rooms:
                for _ in range(args.rounds):
                    await one_round(args, url, client, rooms, first, log)
                    first += rooms
    finally:
        admin = await asyncpg.connect(args.server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def worker_child(args: argparse.Namespace) -> int:
    """`roomservice worker`, with the arq poll delay, the start job's cron microsecond, its batch or the
    number of its batch loops changed."""
    import worker.jobs.lifecycle
    import worker.main
    import worker.schedule
    from common.db import lifecycle
    from roomservice.cli import main as roomservice
    from worker.schedule import worker_settings

    async def start_rooms(ctx: dict[str, Any]) -> int:
        """As the shipped job, with `--parallel` batch loops at once (SKIP LOCKED shares the rooms out)."""
        loops = [worker.jobs.lifecycle._in_batches(ctx, lifecycle.start_rooms, "started") for _ in range(args.parallel)]
        return sum(await asyncio.gather(*loops))

    def tuned(res: Any) -> dict[str, Any]:
        settings = worker_settings(res)
        if args.poll_delay is not None:
            settings["poll_delay"] = args.poll_delay
        if args.cron_microsecond is not None:
            settings["cron_jobs"] = [
                dataclasses.replace(job, microsecond=int(args.cron_microsecond))
                if job.name.endswith("start_rooms")
                else job
                for job in settings["cron_jobs"]
            ]
        return settings

    worker.main.worker_settings = tuned  # type: ignore[attr-defined]
    if args.parallel is not None:
        worker.schedule.start_rooms = start_rooms  # type: ignore[attr-defined]
    if args.batch is not None:
        worker.jobs.lifecycle._BATCH = int(args.batch)
    return roomservice(["worker"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "server", nargs="?", help="a Postgres server URL; the bench makes and drops a database of its own"
    )
    parser.add_argument("redis_url", nargs="?", help="a Redis URL naming an index for the bench alone")
    parser.add_argument("--rooms", type=int, nargs="+", default=[10_000], help="rooms starting at once, per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each size, each with a fresh worker")
    parser.add_argument("--lead", type=float, help="seconds from inserting the rooms to their start (5 + rooms/10,000)")
    parser.add_argument("--start-offset-ms", type=int, default=0, help="the start this far after a whole second")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (replicas) running at once")
    parser.add_argument("--create-rate", type=float, default=0.0, help="creates a second meanwhile")
    parser.add_argument("--poll-delay", type=float, help="the worker's arq poll delay (arq's default: 0.5 s)")
    parser.add_argument("--cron-microsecond", type=int, help="when in each second the start job is due (arq: 123456)")
    parser.add_argument("--batch", type=int, help="rooms per statement of the start job (shipped: 1000)")
    parser.add_argument("--parallel", type=int, help="batch loops of each start job run at once (shipped: 1)")
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker_child:
        sys.exit(worker_child(arguments))
    if not arguments.server or not arguments.redis_url:
        parser.error("the Postgres server URL and the Redis URL are required")
    asyncio.run(main(arguments))
