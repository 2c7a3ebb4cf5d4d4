"""The Litestar application: made by `create_app(settings)`, resources opened in its lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from arq.connections import ArqRedis
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from api.background import RestoreRequests, every
from api.deps import provide_caller
from api.errors import EXCEPTION_HANDLERS
from api.metrics_port import metrics_apart
from api.observe import RequestMetrics, RequestObserver
from api.openapi import complete_description
from api.routes import health, history, participants, rooms, sessions, stats, tickets
from api.tracing import tracing_middleware
from common import tracing
from common.db import pool as db_pool
from common.environment import load_settings
from common.logs import configure_logging
from common.metrics import Metrics, multiprocess_dir
from common.redis.client import close_redis, create_queue_redis, create_redis
from common.redis.guarded import GuardedRedis
from common.redis.room_cache import CACHE_SCRIPTS
from common.rooms.codes import generate_room_code
from common.service.changes import RoomChanges
from common.service.presence import Presence
from common.service.publish import DeferredMarks
from common.service.rooms import RoomService
from common.service.tickets import TicketService
from common.settings import Settings
from common.tickets.keys import load_ticket_keys

log = logging.getLogger(__name__)

# How often the API marks the outbox rows it published, and forwards restore requests to the worker.
_MARK_INTERVAL_SECONDS = 0.1
_FORWARD_INTERVAL_SECONDS = 1.0
# With several API processes, how often each writes its request figures where any process's scrape reads them.
_FLUSH_METRICS_INTERVAL_SECONDS = 1.0


def create_app(settings: Settings, *, new_room_code: Callable[[], str] = generate_room_code) -> Litestar:
    """Build the API. Nothing connects until the app starts; `new_room_code` exists for tests of collisions."""

    metrics = Metrics()
    # Read now, not in the lifespan: a bad key stops the process before it serves (SettingsError).
    ticket_keys = load_ticket_keys(settings.ticket_keys)
    request_metrics = RequestMetrics(metrics) if settings.http_metrics else None

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        # Each close is registered as soon as its resource exists, and runs in reverse order: a start
        # that fails half-way (a bad queue URL), or a step of the stop that fails (the metrics files
        # gone), still closes the pool and the Redis clients.
        async with AsyncExitStack() as closing:
            closing.callback(gc.unfreeze)  # what startup made may be garbage now (an app of a test, say)
            pool = await db_pool.create_pool(settings, stateless_sessions=True)  # plain statements only
            closing.push_async_callback(db_pool.close_pool, pool, settings)
            client = create_redis(settings, settings.redis_timeout_seconds, bounded_by_caller=True)
            closing.push_async_callback(close_redis, client)
            redis = GuardedRedis(client, settings, metrics, settings.redis_timeout_seconds, scripts=CACHE_SCRIPTS)
            marks = DeferredMarks(pool, settings.db_timeout_seconds)
            # Made here rather than by arq, whose own client would wait unboundedly.
            queue = create_queue_redis(settings, settings.redis_timeout_seconds, ArqRedis)
            closing.push_async_callback(close_redis, queue)
            if request_metrics is not None:
                closing.callback(request_metrics.flush)  # the last second's requests, for the processes that stay
            closing.push_async_callback(marks.flush)
            restores = RestoreRequests(queue, redis, settings.redis_timeout_seconds)
            service = RoomService(pool, redis, settings, metrics, note_uncached=restores.note)
            changes = RoomChanges(pool, redis, marks, settings, metrics, new_code=new_room_code)
            ticket_service = TicketService(pool, redis, ticket_keys, settings, metrics, note_uncached=restores.note)
            closing.push_async_callback(
                _stop_all,
                [
                    asyncio.create_task(every(_MARK_INTERVAL_SECONDS, marks.flush)),
                    asyncio.create_task(every(_FORWARD_INTERVAL_SECONDS, restores.forward)),
                    *_metrics_flushing(request_metrics),
                ],
            )
            if settings.metrics_port:
                closing.enter_context(metrics_apart(metrics, settings, asyncio.get_running_loop()))
            await db_pool.warm_up(pool, settings)
            await redis.load_scripts()
            app.state.update(
                settings=settings,
                metrics=metrics,
                pool=pool,
                redis=redis,
                room_service=service,
                room_changes=changes,
                ticket_service=ticket_service,
                presence=Presence(pool, redis, settings, metrics),
                jwks=tickets.jwks_body(ticket_keys.jwks()),
            )
            _exempt_startup_objects_from_gc()
            yield

    # With a metrics port of its own, /metrics is served there alone (api/metrics_port.py).
    public_metrics = [] if settings.metrics_port else [health.metrics]
    rooms_router = Router(
        path="/rooms",
        route_handlers=[
            *rooms.HANDLERS,
            history.get_room_history,
            sessions.get_room_sessions,
            participants.list_participants,
            participants.remove_participant,
            tickets.issue_ticket,
        ],
        dependencies={"caller": Provide(provide_caller, sync_to_thread=False)},
        tags=["rooms"],
    )
    app = Litestar(
        route_handlers=[rooms_router, tickets.jwks, stats.daily_stats, health.live, health.ready, *public_metrics],
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
        middleware=tracing_middleware(),
        debug=False,
        logging_config=None,  # logging is the process's (common/logs.py), not reconfigured by Litestar
    )
    # Around Litestar's own handler (routing, error answers) rather than a route middleware, which
    # runs only for a path that matched: every answer gets its request id and is counted.
    app.asgi_handler = RequestObserver(app.asgi_handler, settings, request_metrics)
    complete_description(app.openapi_schema, settings)
    return app


def _metrics_flushing(request_metrics: RequestMetrics | None) -> list[asyncio.Task[None]]:
    """With several processes, a task that writes this one's request figures down every second: another
    process may answer the scrape, and this one's requests must be in the files it reads."""
    if request_metrics is None or multiprocess_dir() is None:
        return []
    flush = request_metrics.flush

    async def flush_request_metrics() -> None:
        try:
            flush()
        except Exception:  # a full disk, say: the loop must outlive it, and try again
            log.exception("could not write the request metrics down")

    return [asyncio.create_task(every(_FLUSH_METRICS_INTERVAL_SECONDS, flush_request_metrics))]


async def _stop_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _exempt_startup_objects_from_gc() -> None:
    """Move everything startup made (the app and its routes, the libraries' modules: some sixty thousand
    objects, alive until the process ends) out of the garbage collector's sight.

    Every full collection walks every tracked object. Under load, request objects that outlive two
    young collections keep triggering full ones: without this, a 20-30 ms pause every half second,
    which was the whole p99 of a cached GET (docs/performance.md). What is garbage now is collected
    first, so nothing is frozen that could have been freed.
    """
    gc.collect()
    gc.freeze()


def app_from_environment() -> Litestar:
    """Factory for the ASGI server: settings come from the `ROOMS_*` environment of the process."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format or "json")
    tracing.start_from_environment("roomservice-api", os.environ)
    return create_app(settings)
