"""The worker as a process: killed, restarted, and with Redis restarted underneath it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import redis.asyncio as redis
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import room_key
from tests.support.processes import ROOMSERVICE, environment
from tests.support.settings import make_settings
from tests.support.waiting import eventually


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*ROOMSERVICE, "worker"], env=env, stdout=out, stderr=out)


async def test_worker_resumes_after_sigkill_and_after_a_redis_restart(
    database_url, own_redis, db, host, tmp_path
) -> None:
    redis_url = f"redis://127.0.0.1:{own_redis.port}/0"
    stream = f"test:{uuid.uuid4().hex[:12]}:events"
    tuning = {
        "sweep_interval_seconds": 2,
        "claim_idle_seconds": 2.0,
        "worker_db_timeout_seconds": 1.5,
        "relay_grace_seconds": 0.5,
        "db_timeout_seconds": 0.4,  # the API's (below the grace), which this worker does not use
    }
    env = environment(
        database_url=database_url, redis_url=redis_url, stream_name=stream, **{k: str(v) for k, v in tuning.items()}
    )
    log = tmp_path / "worker.log"
    settings = make_settings(database_url, redis_url, stream_name=stream, redis_retry_seconds=0.5)
    inspect = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def recorded(codes: list[str]) -> bool:
        count = await db.fetchval("SELECT count(DISTINCT room_id) FROM room_history WHERE room_id = any($1)", codes)
        return count == len(codes)

    async def cached(codes: list[str]) -> bool:
        try:
            return await inspect.exists(*(room_key(c) for c in codes)) == len(codes)
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    worker = start_worker(env, log)
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:

            async def create(n: int) -> list[str]:
                responses = [await client.post("/rooms", headers=host) for _ in range(n)]
                assert {r.status_code for r in responses} == {201}
                return [r.json()["roomId"] for r in responses]

            first = await create(3)
            await eventually(lambda: recorded(first), 20, "history of rooms created while the worker ran")

            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            second = await create(3)
            worker = start_worker(env, log)
            await eventually(lambda: recorded(second), 20, "history after the worker was killed and restarted")

            own_redis.stop()  # a restart without persistence: everything in Redis is gone
            during = await create(2)  # Redis is down: these wait in the outbox
            await asyncio.sleep(1.5)  # long enough for arq's poll loop to hit the outage
            own_redis.start()
            third = during + await create(3)
            await eventually(lambda: recorded(third), 30, "history after Redis restarted under the worker")
            await eventually(lambda: cached(first + second + third), 30, "every live room cached again")

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        # The outage ended arq's poll loop, and the supervisor started it again.
        assert "jobs failed, a dependency is unavailable" in log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await inspect.aclose()
        if os.environ.get("CI"):
            sys.stderr.write(log.read_text()[-5000:])
    # Every room was recorded exactly once, whatever was redelivered on the way.
    rows = await db.fetch(
        "SELECT room_id, count(*) AS n FROM room_history WHERE room_id = any($1) GROUP BY room_id",
        first + second + third,
    )
    assert {r["n"] for r in rows} == {1}
