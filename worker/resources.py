"""What every worker task uses, made once per process and closed on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from redis.asyncio import Redis

from common import database
from common.cache import RoomCache, create_redis
from common.database import Pool
from common.metrics import Metrics
from common.settings import Settings


class WorkerResources(msgspec.Struct, frozen=True, kw_only=True):
    settings: Settings
    pool: Pool
    cache: RoomCache
    metrics: Metrics


@asynccontextmanager
async def worker_resources(settings: Settings) -> AsyncIterator[WorkerResources]:
    """Postgres pool and Redis client with the worker's (batch-sized) bounds."""
    pool = await database.create_pool(settings, command_timeout=settings.worker_db_timeout_seconds)
    # Every use of this client (RoomCache, the history consumer) runs under its own asyncio.timeout.
    client = create_redis(settings, settings.worker_redis_timeout_seconds, Redis, bounded_by_caller=True)
    metrics = Metrics()
    cache = RoomCache(client, settings, metrics, settings.worker_redis_timeout_seconds)
    await cache.load_scripts()
    try:
        yield WorkerResources(settings=settings, pool=pool, cache=cache, metrics=metrics)
    finally:
        await client.aclose()
        await database.close_pool(pool, settings)
