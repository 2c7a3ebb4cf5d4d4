"""The Litestar application: made by `create_app(settings)`, resources opened in its lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from arq.connections import ArqRedis
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from redis.asyncio import Redis

from api.errors import EXCEPTION_HANDLERS
from api.health import live, metrics, ready
from api.rooms import rooms_router
from api.stats import daily_stats
from common import database
from common.cache import RoomCache, create_redis
from common.logs import configure_logging
from common.metrics import Metrics
from common.room_codes import generate_room_code
from common.room_store import RoomStore
from common.settings import Settings, load_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, new_room_code: Callable[[], str] = generate_room_code) -> Litestar:
    """Build the API. Nothing connects until the app starts; `new_room_code` exists for tests of collisions."""

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        metrics_ = Metrics()
        pool = await database.create_pool(settings, stateless_sessions=True)  # plain statements only
        redis = create_redis(settings, settings.redis_timeout_seconds, Redis, bounded_by_caller=True)
        cache = RoomCache(redis, settings, metrics_, settings.redis_timeout_seconds)
        store = RoomStore(pool, cache, settings, metrics_, new_room_code)
        # arq's queue client shares the cache's bounded connections; arq's own would wait unboundedly.
        job_queue = ArqRedis(connection_pool=redis.connection_pool)
        background = [
            asyncio.create_task(store.forward_restore_requests(job_queue, interval=1.0)),
            asyncio.create_task(store.mark_published_events(interval=0.1)),
        ]
        try:
            await database.warm_up(pool, settings)
            await cache.load_scripts()
            app.state.update(settings=settings, metrics=metrics_, pool=pool, cache=cache, room_store=store)
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await store.flush_published()
            await redis.aclose()
            await database.close_pool(pool, settings)

    return Litestar(
        route_handlers=[rooms_router, daily_stats, live, ready, metrics],
        lifespan=[resources],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Room Service",
            version="1.0.0",
            description="Creates meetings and tells whether a meeting exists and who may join it.",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        debug=False,
    )


def app_from_environment() -> Litestar:
    """Factory for the ASGI server: settings come from the `ROOMS_*` environment of the process."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level)
    return create_app(settings)
