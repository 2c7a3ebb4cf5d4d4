"""Health for orchestrators, and counters for scrapers."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from common.db.pool import connection
from common.errors import DatabaseUnavailable
from common.metrics import CONTENT_TYPE


class Readiness(msgspec.Struct, frozen=True, rename="camel"):
    postgres: Literal["ok", "down"]
    redis: Literal["ok", "down"]
    # Rate limits live in Redis: without it they are not enforced (the service stays up instead).
    rate_limits: Literal["enforced", "fail-open"]
    # Join tickets need ROOMS_TICKET_KEYS; without it the rest serves, and the tickets route answers 503.
    tickets: Literal["configured", "not_configured"]


@get("/health/live", summary="The process is up", tags=["health"], cache=False)
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/health/ready",
    summary="Ready to serve: 200 while Postgres answers (Redis is optional), else 503",
    tags=["health"],
    responses={503: ResponseSpec(Readiness, description="Postgres does not answer.", generate_examples=False)},
)
async def ready(state: State) -> Response[Readiness]:
    postgres: Literal["ok", "down"] = "ok"
    try:
        async with connection(state.pool, state.settings.db_timeout_seconds) as conn:
            await conn.fetchval("SELECT 1")
    except DatabaseUnavailable:
        postgres = "down"
    redis_up = await state.redis.ping()
    readiness = Readiness(
        postgres=postgres,
        redis="ok" if redis_up else "down",
        rate_limits="enforced" if redis_up else "fail-open",
        tickets="configured" if state.ticket_service.configured else "not_configured",
    )
    return Response(readiness, status_code=200 if postgres == "ok" else 503)


@get(
    "/metrics",
    summary="Metrics in the Prometheus text format",
    description="Requests by route and status, request latency, the service's counters, process metrics.",
    tags=["health"],
    media_type=CONTENT_TYPE,
)
async def metrics(state: State) -> Response[bytes]:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
