"""The arq worker: its settings, its resources, and the jobs it runs.

Run with `roomservice worker`. Resources are made in `on_startup` and closed in `on_shutdown`;
settings arrive in the worker's `ctx`, so importing this module reads nothing and connects nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from arq.connections import RedisSettings

from common import database
from common.cache import RoomCache, create_redis
from common.metrics import Metrics
from common.settings import Settings, require
from worker.cache_rebuild import restore_room_cache


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["pool"] = await database.create_pool(settings)
    # arq keeps its own client in ctx["redis"]; ours has the short timeouts the cache relies on.
    ctx["cache_redis"] = create_redis(settings)
    ctx["cache"] = RoomCache(ctx["cache_redis"], settings, Metrics())


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["cache_redis"].aclose()
    await database.close_pool(ctx["pool"], ctx["settings"])


class WorkerSettings:
    """Read by arq through the class's own `__dict__`: keep every attribute here, none inherited."""

    functions: ClassVar = [restore_room_cache]
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 50
    job_timeout = 30
    handle_signals = True


def worker_options(settings: Settings) -> dict[str, Any]:
    """What `arq.run_worker(WorkerSettings, **worker_options(settings))` needs from our settings."""
    redis_settings = RedisSettings.from_dsn(require(settings.redis_url, "REDIS_URL"))
    redis_settings.conn_timeout = max(1, round(settings.redis_timeout_seconds * 4))
    return {"redis_settings": redis_settings, "ctx": {"settings": settings}}
