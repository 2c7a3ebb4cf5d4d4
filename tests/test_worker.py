"""The arq worker, run for real in burst mode against real Redis and Postgres."""

from __future__ import annotations

import uuid

from arq import create_pool
from arq.worker import Worker

from worker.main import WorkerSettings, worker_options


async def run_burst(settings, job_name: str, *args: object) -> object:
    options = worker_options(settings)
    queue = f"test-queue-{uuid.uuid4().hex[:8]}"  # a queue of this test's own
    arq_redis = await create_pool(options["redis_settings"], default_queue_name=queue)
    try:
        job = await arq_redis.enqueue_job(job_name, *args)
        assert job is not None
        worker = Worker(
            functions=WorkerSettings.functions,
            on_startup=WorkerSettings.on_startup,
            on_shutdown=WorkerSettings.on_shutdown,
            queue_name=queue,
            burst=True,
            poll_delay=0,
            handle_signals=False,
            **options,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        return await job.result(timeout=5)
    finally:
        await arq_redis.aclose()


async def test_restore_room_cache_puts_a_live_room_back(client, host, settings, redis_client) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await redis_client.delete(f"room:{code}")

    assert await run_burst(settings, "restore_room_cache", code) is True

    assert await redis_client.exists(f"room:{code}")
    assert 0 < await redis_client.pttl(f"room:{code}") <= 86_400_000


async def test_restore_room_cache_leaves_ended_rooms_out(client, host, settings, redis_client, db) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await db.execute("UPDATE meetings SET is_active = false WHERE room_id = $1", code)
    await redis_client.delete(f"room:{code}")

    assert await run_burst(settings, "restore_room_cache", code) is False
    assert not await redis_client.exists(f"room:{code}")
