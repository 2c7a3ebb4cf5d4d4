"""Join benchmark: joins per second through the Signaling contract (common/signaling/join.lua).

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/join_bench.py                      # 64 concurrent clients, 10 s
    .venv/bin/python bench/join_bench.py --script heartbeat   # heartbeat.lua instead: members refreshing

Two views of the same script, on scratch servers (bench/scratch.py):
- `redis-benchmark` runs EVALSHA join.lua from 64 connections: what Redis itself sustains, the figure
  a Signaling fleet is bounded by;
- 64 asyncio clients call it through `common.signaling.contract.JoinContract` (redis-py), each joining and
  leaving rooms: what one Python process of a Signaling service gets, with latency percentiles.
With `--script heartbeat`, every room has MEMBERS members (the same ids in each) that heartbeat instead.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import redis.asyncio as redis
from scratch import scratch_servers

from common.metrics import Metrics
from common.redis.guarded import GuardedRedis
from common.redis.keys import participants_key, room_key
from common.redis.room_cache import CACHE_SCRIPTS, RoomCache
from common.rooms.codes import generate_room_code
from common.rooms.model import JSON_ENCODER, CachedRoom, Room
from common.settings import Settings
from common.signaling.contract import HEARTBEAT, JOIN, JoinContract

ROOMS = 1000
HEARTBEAT_MS = "30000"
SCRIPTS = {"join": JOIN, "heartbeat": HEARTBEAT}
# Members of each room in the heartbeat run, named as redis-benchmark's __rand_int__ (12 digits) spells them.
MEMBERS = 4


async def cache_rooms(settings: Settings, client: redis.Redis) -> list[str]:
    """Rooms of 50 places each (a paid tier), so that most joins are admitted rather than refused."""
    now = datetime.now(UTC)
    rooms = [
        Room(
            id=uuid.uuid4(), room_id=generate_room_code(), host_id=uuid.uuid4(), max_participants=50,
            created_at=now, expires_at=now + timedelta(hours=1), version=1,
        )
        for _ in range(ROOMS)
    ]  # fmt: skip
    metrics = Metrics()
    cache = RoomCache(
        GuardedRedis(client, settings, metrics, timeout=10, scripts=CACHE_SCRIPTS), metrics, settings.early_join_seconds
    )
    assert await cache.write(put=[CachedRoom(room, JSON_ENCODER.encode(room).decode()) for room in rooms]) == len(rooms)
    return [room.room_id for room in rooms]


def member(index: int) -> str:
    return f"participant-{index:012d}"


def redis_benchmark(settings: Settings, script: str, sha: str, room_id: str, clients: int, requests: int) -> str:
    """EVALSHA join.lua on one room with random participant ids (they expire, so the room refills), or
    heartbeat.lua for its members."""
    url = urlsplit(settings.redis_url)
    room = room_id
    ids, ttl = ("1000000000", "50") if script == "join" else (str(MEMBERS), HEARTBEAT_MS)
    command = [
        "redis-benchmark", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-c", str(clients),
        "-n", str(requests), "-r", ids, "-q",
        "EVALSHA", sha, "2", room_key(room), participants_key(room), "participant-__rand_int__", ttl,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout
    return out.replace("\r", "\n").strip().splitlines()[-1].split(": ", 1)[-1]  # the final summary, not progress


async def python_clients(client: redis.Redis, script: str, rooms: list[str], clients: int, seconds: float) -> None:
    contract = JoinContract(client)
    if script == "heartbeat":
        for room in rooms:
            await asyncio.gather(*(contract.join(room, member(i), 10 * int(HEARTBEAT_MS)) for i in range(MEMBERS)))
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            room, someone = random.choice(rooms), uuid.uuid4().hex
            started = time.perf_counter()
            outcome: str
            if script == "heartbeat":
                beat = await contract.heartbeat(room, member(random.randrange(MEMBERS)), int(HEARTBEAT_MS))
                outcome = beat.outcome
            else:
                outcome = (await contract.join(room, someone, int(HEARTBEAT_MS))).outcome
            latencies.append(time.perf_counter() - started)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "admitted" and random.random() < 0.5:
                await contract.leave(room, someone)  # keep rooms from filling up for good

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"JoinContract.{script} from {clients} asyncio clients: {len(latencies) / elapsed:,.0f} {script}s/s, "
        f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms; outcomes {outcomes}"
    )


async def run(settings: Settings, script: str, clients: int, seconds: float) -> tuple[str, str]:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, max_connections=clients * 2)
    try:
        rooms = await cache_rooms(settings, client)
        sha = await client.script_load(SCRIPTS[script].source)
        await python_clients(client, script, rooms, clients, seconds)
        return str(sha), rooms[0]
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--requests", type=int, default=500_000, help="for redis-benchmark")
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="join")
    args = parser.parse_args()
    with scratch_servers() as settings:
        sha, room = asyncio.run(run(settings, args.script, args.clients, args.seconds))
        if shutil.which("redis-benchmark"):
            print(f"redis-benchmark, {args.clients} connections, EVALSHA {args.script}.lua on one room: "
                  f"{redis_benchmark(settings, args.script, sha, room, args.clients, args.requests)}")  # fmt: skip
        else:
            print("redis-benchmark not found (Debian: redis-tools); skipped the server-side figure")


if __name__ == "__main__":
    main()
