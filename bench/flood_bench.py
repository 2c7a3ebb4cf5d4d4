"""Flood benchmark: how much of a flood of unknown room codes reaches Postgres.

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/flood_bench.py             # 10,000 requests over 2,000 distinct codes

A guesser asks for codes that do not exist, repeating some. The API runs as `roomservice serve` on
scratch servers (bench/scratch.py); what reached Postgres is read from its own counter
`roomservice_database_lookups_total`. Three runs, each on fresh servers: one client with the default
limits; ten clients (ten user ids), each with its own allowance; one client with the miss limit off,
which leaves the negative cache alone to show its share.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from scratch import scratch_servers

from common.rooms.codes import generate_room_code

LOOKUPS = re.compile(r"^roomservice_database_lookups_total (\d+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def flood(base: str, requests: int, clients: int, distinct: int, concurrency: int) -> dict[int, int]:
    codes = [generate_room_code() for _ in range(distinct)]
    users = [str(uuid.uuid4()) for _ in range(clients)]
    statuses: collections.Counter[int] = collections.Counter()
    queue = [(random.choice(users), random.choice(codes)) for _ in range(requests)]
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:

        async def worker(share: list[tuple[str, str]]) -> None:
            for user, code in share:
                statuses[(await http.get(f"/rooms/{code}", headers={"X-User-Id": user})).status_code] += 1

        await asyncio.gather(*(worker(queue[i::concurrency]) for i in range(concurrency)))
    return dict(statuses)


def lookups(base: str) -> int:
    found = LOOKUPS.search(httpx.get(f"{base}/metrics", timeout=5).text)
    assert found, "the service exposes no lookup counter"
    return int(found.group(1))


def one_run(label: str, env_overrides: dict[str, str], clients: int, args: argparse.Namespace) -> None:
    with scratch_servers() as settings:
        port = free_port()
        env = {
            **os.environ,
            "ROOMS_DATABASE_URL": settings.database_url,
            "ROOMS_REDIS_URL": settings.redis_url,
            "ROOMS_PORT": str(port),
            **env_overrides,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "roomservice", "serve"], env=env, cwd=Path(__file__).parents[1]
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            before = lookups(base)
            statuses = asyncio.run(flood(base, args.requests, clients, args.distinct, args.concurrency))
            reached = lookups(base) - before
        finally:
            server.terminate()
            server.wait(timeout=20)
    share = 100 * reached / args.requests
    print(f"{label}: {args.requests} requests from {clients} client(s) over {args.distinct} codes -> "
          f"statuses {statuses}; {reached} reached Postgres = {share:.2f}%")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    one_run("default limits, one client", {}, 1, args)
    one_run("default limits, ten clients", {}, 10, args)
    one_run("negative cache only (miss limit off), one client", {"ROOMS_MISS_LIMIT_PER_MINUTE": "0"}, 1, args)


if __name__ == "__main__":
    main()
