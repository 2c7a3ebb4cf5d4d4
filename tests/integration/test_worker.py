"""arq jobs run by a real arq worker in burst mode, against real Redis and Postgres."""

from __future__ import annotations

import asyncio
import uuid

from arq.connections import ArqRedis
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.jobs import RESTORE_ROOM_CACHE, restore_job_id
from common.redis.client import close_redis, create_queue_redis
from common.redis.keys import room_key
from tests.support.faultproxy import Mode, redis_url_via
from tests.support.settings import make_settings
from worker.schedule import worker_settings


async def run_burst(res, queue_name: str) -> Worker:
    """Run the queued jobs of `queue_name` with the service's own arq settings, then return."""
    queue = create_queue_redis(res.settings, 5, ArqRedis)
    options = {**worker_settings(res), "cron_jobs": [], "poll_delay": 0}  # only what was queued, at once
    worker = Worker(**options, redis_pool=queue, queue_name=queue_name, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await close_redis(queue)
    return worker


async def enqueue_restore(res, queue_name: str, room_id: str) -> None:
    queue = create_queue_redis(res.settings, 5, ArqRedis)
    queue.default_queue_name = queue_name
    try:
        await queue.enqueue_job(RESTORE_ROOM_CACHE, room_id, _job_id=restore_job_id(room_id))
    finally:
        await close_redis(queue)


async def test_restore_job_puts_a_live_room_back(client, host, worker_res, redis_client) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await redis_client.delete(room_key(code))
    queue_name = f"test-queue-{uuid.uuid4().hex[:8]}"

    await enqueue_restore(worker_res, queue_name, code)
    worker = await run_burst(worker_res, queue_name)

    assert worker.jobs_complete == 1
    assert worker.jobs_failed == 0
    assert await redis_client.exists(room_key(code))
    assert 0 < await redis_client.pttl(room_key(code)) <= 86_400_000


async def test_restore_job_leaves_ended_rooms_out(client, host, worker_res, redis_client, db) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await db.execute("UPDATE meetings SET is_active = false WHERE room_id = $1", code)
    await redis_client.delete(room_key(code))
    queue_name = f"test-queue-{uuid.uuid4().hex[:8]}"

    await enqueue_restore(worker_res, queue_name, code)
    await run_burst(worker_res, queue_name)

    assert not await redis_client.exists(room_key(code))


async def test_rooms_served_from_postgres_during_an_outage_are_restored_after_it(
    database_url, redis_url, redis_proxy, stream_name, worker_res, redis_client, host
) -> None:
    settings = make_settings(
        database_url, redis_url_via(redis_url, redis_proxy), stream_name=stream_name, redis_retry_seconds=0.2
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        code = (await client.post("/rooms", headers=host)).json()["roomId"]
        await redis_client.delete(room_key(code))
        redis_proxy.set_mode(Mode.REFUSE)
        assert (await client.get(f"/rooms/{code}")).status_code == 200  # from Postgres; not cached
        redis_proxy.set_mode(Mode.PASS)
        await client.get("/health/ready")  # lets the breaker's probe find Redis back

        job_key = f"arq:job:restore-room:{code}"
        for _ in range(50):  # the API forwards its requests about once a second
            if await redis_client.exists(job_key):
                break
            await asyncio.sleep(0.1)
        assert await redis_client.exists(job_key), "the API did not ask the worker to restore the room"

    # The default queue, which the API asks: on a shared server it may also hold jobs another test's
    # worker left (its crons), which this worker, without them, fails. The restore is what counts.
    worker = await run_burst(worker_res, "arq:queue")
    assert worker.jobs_complete >= 1
    assert not await redis_client.exists(job_key), "the restore job did not run"
    assert await redis_client.exists(room_key(code))
