"""The data bench/run.py measures with: its own Postgres databases and Redis indexes, the room codes,
the rooms loaded into both databases, and the cache warmed before measuring.

Everything here is made for one run and removed at its end. The bench marks what it makes
(OWNER_MARK) and only ever drops or flushes what carries the mark.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import redis
from locations import with_path

OURS_DATABASE = "roomservice_bench"
PEER_DATABASE = "peer_bench"
# Put on every database and Redis index the bench makes: it only ever drops or flushes what carries it.
OWNER_MARK = "scratch data of bench/run.py"
OWNER_KEY = "bench:owner"

CODE_SPACE = 26**10


@dataclass(frozen=True)
class CodePlan:
    """The room codes loaded into both databases, one per line of `path`.

    The first `hit_count` lines are the rooms cached before measuring. The rest are split into one
    slice per round for the miss scenario, so every miss run requests rooms nobody requested before.
    (Each server has its own database, so both use the same slice.)
    """

    path: Path
    hit_count: int
    total: int
    rounds: int

    def miss_slice(self, round_index: int) -> tuple[int, int]:
        size = (self.total - self.hit_count) // self.rounds
        return self.hit_count + round_index * size, size


@contextmanager
def scratch_databases(admin_url: str, names: Sequence[str]) -> Iterator[None]:
    """Create the named databases for this run and drop them afterwards.

    A database left by an earlier, interrupted run (it carries OWNER_MARK) is replaced; any other
    database of that name stops the bench.
    """
    created: list[str] = []
    try:
        for name in names:
            asyncio.run(_recreate_database(admin_url, name))
            created.append(name)
        yield
    finally:
        for name in created:
            asyncio.run(_drop_database(admin_url, name))


async def _recreate_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        mark = await conn.fetchval(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1",
            name,
        )  # None: no such database
        if mark is not None and mark != OWNER_MARK:
            raise RuntimeError(f"database {name} exists and was not made by the bench; not touching it")
        if mark is not None:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{OWNER_MARK}'")
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def scratch_redis(base_url: str, indexes: Sequence[int]) -> Iterator[dict[int, redis.Redis]]:
    """Clients on the given Redis indexes, emptied now and afterwards.

    An index must be empty or marked as the bench's (OWNER_KEY) from an earlier run; otherwise the
    bench stops rather than flush someone else's keys.
    """
    clients: dict[int, redis.Redis] = {}
    try:
        for index in indexes:
            client = redis.Redis.from_url(with_path(base_url, str(index)), socket_timeout=5)
            clients[index] = client
            if client.dbsize() and client.get(OWNER_KEY) != OWNER_MARK.encode():
                raise RuntimeError(f"Redis index {index} holds keys the bench did not write; not touching it")
            client.flushdb()
            client.set(OWNER_KEY, OWNER_MARK)
        yield clients
    finally:
        for client in clients.values():
            if client.get(OWNER_KEY) == OWNER_MARK.encode():
                client.flushdb()
            client.close()


def write_room_codes(path: Path, count: int) -> list[str]:
    """`count` distinct random codes, written one per line for the Lua scripts."""
    numbers = random.Random(20240501).sample(range(CODE_SPACE), count)
    codes = [_code(n) for n in numbers]
    path.write_text("\n".join(codes) + "\n")
    return codes


def _code(number: int) -> str:
    letters = []
    for _ in range(10):
        number, digit = divmod(number, 26)
        letters.append(chr(ord("a") + digit))
    text = "".join(letters)
    return f"{text[:3]}-{text[3:7]}-{text[7:]}"


async def load_rooms(ours_url: str, peer_url: str, codes: Sequence[str]) -> None:
    """Insert the rooms straight into both databases with COPY: far faster than going through the APIs."""
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    ours = [(code, uuid.uuid4(), 4, expires_at) for code in codes]
    # The peer's table has no server-side defaults for these columns (SQLAlchemy fills them in Python).
    peer = [(uuid.uuid4(), code, uuid.uuid4(), True, 4) for code in codes]
    await _copy(ours_url, ours, ["room_id", "host_id", "max_participants", "expires_at"])
    await _copy(peer_url, peer, ["id", "room_id", "host_id", "is_active", "max_participants"])


async def _copy(url: str, records: Sequence[tuple[object, ...]], columns: list[str]) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.copy_records_to_table("meetings", records=records, columns=columns)
        # Vacuum and checkpoint now, so that autovacuum and the checkpoint due after a bulk load do
        # not land in the first measured runs.
        await conn.execute("VACUUM ANALYZE meetings")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def warm_cache(base_url: str, codes: Sequence[str], concurrency: int = 16) -> None:
    """Request each code once, so the server caches the room itself, in its own format."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:

        async def fetch_all(share: Sequence[str]) -> None:
            for code in share:
                response = await client.get(f"/rooms/{code}")
                if response.status_code != 200:
                    raise RuntimeError(f"{base_url}/rooms/{code} answered {response.status_code} while warming")

        await asyncio.gather(*(fetch_all(codes[i::concurrency]) for i in range(concurrency)))
