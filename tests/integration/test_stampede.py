"""A stampede on one code that Redis lacks: one Postgres lookup per API process, counted by Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from common.redis.keys import room_key
from roomservice.migrate import migrate
from tests.support.processes import ROOMSERVICE, environment, free_port, wait_until_ready

STAMPEDE = 200

# Index scans of the room-code index: every lookup of a room by its code is one.
_LOOKUPS = """
SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'meetings_room_id_key'
"""


async def lookups(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(await conn.fetchval(_LOOKUPS))


@pytest.mark.parametrize("answer", ["live", "ended", "unknown"])
async def test_concurrent_gets_of_a_code_redis_lacks_make_one_postgres_lookup(
    scratch_database: str, own_redis, tmp_path, answer: str
) -> None:
    await migrate(scratch_database)
    port = free_port()
    env = environment(
        database_url=scratch_database,
        redis_url=own_redis.connection_url,
        port=str(port),
        miss_limit_per_minute="0",
        db_pool_max_size="20",
    )
    log = (tmp_path / "api.log").open("ab")
    server = subprocess.Popen(
        [*ROOMSERVICE, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    db = await asyncpg.connect(scratch_database, timeout=10)
    inspect = redis.Redis.from_url(own_redis.connection_url, socket_timeout=5)
    try:
        await asyncio.to_thread(wait_until_ready, port, server)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, limits=httpx.Limits(max_connections=STAMPEDE)
        ) as client:
            host = {"X-User-Id": str(uuid.uuid4())}
            code = (await client.post("/rooms", headers=host)).json()["roomId"]
            if answer == "ended":
                # Ended here rather than by DELETE: an API connection may hold its statements' index
                # scans for up to 10 s before reporting them, which would count them as lookups below.
                await db.execute("UPDATE meetings SET is_active = false WHERE room_id = $1", code)
                await db.execute("SELECT pg_stat_force_next_flush()")  # this one reports them now
            elif answer == "unknown":
                code = "zzz-zzzz-zzz"
            await inspect.delete(room_key(code))
            os.killpg(server.pid, signal.SIGSTOP)  # granian and its worker: every request waits for them
            gets = [asyncio.create_task(client.get(f"/rooms/{code}")) for _ in range(STAMPEDE)]
            await asyncio.sleep(1.0)
            before = await lookups(db)
            os.killpg(server.pid, signal.SIGCONT)
            statuses = {response.status_code for response in await asyncio.gather(*gets)}
        server.send_signal(signal.SIGINT)  # its connections close, and Postgres counts what they did
        assert server.wait(timeout=20) == 0
        await asyncio.sleep(0.5)
        made = await lookups(db) - before
    finally:
        if server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        await db.close()
        await inspect.aclose()

    assert statuses == {{"live": 200, "ended": 410, "unknown": 404}[answer]}
    assert made == 1, f"{made} Postgres lookups for {STAMPEDE} concurrent GETs of one code"
