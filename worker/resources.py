"""What every worker task uses, made once per process and closed on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import msgspec

from common.db import pool as db_pool
from common.db.pool import Pool
from common.metrics import Metrics
from common.redis.client import RedisClient, close_redis, create_redis
from common.redis.guarded import GuardedRedis
from common.redis.room_cache import CACHE_SCRIPTS, RoomCache
from common.redis.sessions import PRESENCE
from common.redis.stream import EventStream
from common.service.publish import Publisher
from common.settings import Settings
from worker.monitor import WorkerMonitor


class WorkerResources(msgspec.Struct, frozen=True, kw_only=True):
    settings: Settings
    pool: Pool
    # The stream consumer's client: each of its calls is bounded by its own timeout, and it is
    # supervised rather than guarded (a consumer has nothing useful to do without Redis).
    redis: RedisClient
    # The same client for the jobs, bounded and behind the breaker.
    guarded: GuardedRedis
    cache: RoomCache
    publisher: Publisher
    metrics: Metrics
    monitor: WorkerMonitor


@asynccontextmanager
async def worker_resources(settings: Settings) -> AsyncIterator[WorkerResources]:
    """Postgres pool and Redis client with the worker's (batch-sized) bounds.

    Each close is registered as soon as its resource exists: a start that fails or is cancelled
    half-way (SIGTERM while Redis hangs), or a close that fails, still closes the rest."""
    async with AsyncExitStack() as closing:
        pool = await db_pool.create_pool(settings, command_timeout=settings.worker_db_timeout_seconds)
        closing.push_async_callback(db_pool.close_pool, pool, settings)
        # Every use of this client runs under its own asyncio.timeout.
        client = create_redis(settings, settings.worker_redis_timeout_seconds, bounded_by_caller=True)
        closing.push_async_callback(close_redis, client)
        metrics = Metrics()
        scripts = (*CACHE_SCRIPTS, PRESENCE)
        guarded = GuardedRedis(client, settings, metrics, settings.worker_redis_timeout_seconds, scripts=scripts)
        cache = RoomCache(guarded, metrics, settings.early_join_seconds)
        publisher = Publisher(cache, EventStream.from_settings(settings))
        await guarded.load_scripts()
        yield WorkerResources(
            settings=settings,
            pool=pool,
            redis=client,
            guarded=guarded,
            cache=cache,
            publisher=publisher,
            metrics=metrics,
            monitor=WorkerMonitor(metrics, settings),
        )
