"""Redis and Postgres failing for real: connections refused, blackholed or reset by a TCP proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis
from httpx import Response
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import room_key
from tests.support.faultproxy import Mode, postgres_url_via, redis_url_via
from tests.support.metrics import metric_value
from tests.support.settings import make_settings

# Short enough that recovery tests stay quick, long enough to be a real open interval.
BREAKER_RETRY_SECONDS = 0.5


@pytest.fixture
async def via_redis_proxy(database_url, redis_url, redis_proxy) -> AsyncIterator[AsyncTestClient]:
    settings = make_settings(
        database_url, redis_url_via(redis_url, redis_proxy), redis_retry_seconds=BREAKER_RETRY_SECONDS
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
async def via_postgres_proxy(database_url, settings_with, postgres_proxy) -> AsyncIterator[AsyncTestClient]:
    settings = settings_with(database_url=postgres_url_via(database_url, postgres_proxy))
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def timed(request: Awaitable[Response]) -> tuple[Response, float]:
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


# -- Redis ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Mode.REFUSE, Mode.RESET])
async def test_redis_down_rooms_still_work_and_the_cache_returns(
    via_redis_proxy, redis_proxy, redis_client: redis.Redis, host, fault
) -> None:
    client = via_redis_proxy
    before = (await client.post("/rooms", headers=host)).json()["roomId"]

    redis_proxy.set_mode(fault)
    during = await client.post("/rooms", headers=host)
    assert during.status_code == 201
    created_during = during.json()["roomId"]
    assert (await client.get(f"/rooms/{before}")).status_code == 200
    assert (await client.get(f"/rooms/{created_during}")).status_code == 200
    assert (await client.get("/health/ready")).json() == {
        "postgres": "ok",
        "redis": "down",
        "rateLimits": "fail-open",
        "tickets": "not_configured",
    }
    metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "roomservice_cache_breaker_open") == 1
    assert metric_value(metrics, "roomservice_cache_writes_skipped_total") != 0
    assert not await redis_client.exists(room_key(created_during))

    redis_proxy.set_mode(Mode.PASS)

    async def cached_again() -> bool:
        response = await client.get(f"/rooms/{created_during}")
        assert response.status_code == 200
        return bool(await redis_client.exists(room_key(created_during)))

    # Within a few breaker intervals the service uses Redis again by itself.
    assert await eventually(cached_again, within=10 * BREAKER_RETRY_SECONDS)
    assert (await client.get("/health/ready")).json() == {
        "postgres": "ok",
        "redis": "ok",
        "rateLimits": "enforced",
        "tickets": "not_configured",
    }


async def test_redis_blackholed_no_request_is_slow(via_redis_proxy, redis_proxy, host) -> None:
    client = via_redis_proxy
    existing = (await client.post("/rooms", headers=host)).json()["roomId"]

    redis_proxy.set_mode(Mode.BLACKHOLE)
    sequential = [await timed(client.get(f"/rooms/{existing}")) for _ in range(5)]
    sequential += [await timed(client.post("/rooms", headers=host)) for _ in range(3)]
    concurrent = await asyncio.gather(
        *(timed(client.get(f"/rooms/{existing}")) for _ in range(20)),
        *(timed(client.post("/rooms", headers=host)) for _ in range(10)),
    )

    for response, seconds in [*sequential, *concurrent]:
        assert response.status_code in (200, 201)
        assert seconds < 1.0, f"{response.request.method} took {seconds:.2f}s"


# -- Postgres ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Mode.REFUSE, Mode.RESET, Mode.BLACKHOLE])
async def test_postgres_down_answers_503_quickly_but_cached_rooms_still_validate(
    via_postgres_proxy, postgres_proxy, redis_client: redis.Redis, host, fault
) -> None:
    client = via_postgres_proxy
    cached = (await client.post("/rooms", headers=host)).json()["roomId"]
    uncached = (await client.post("/rooms", headers=host)).json()["roomId"]
    await redis_client.delete(room_key(uncached))

    postgres_proxy.set_mode(fault)

    hit, hit_seconds = await timed(client.get(f"/rooms/{cached}"))
    assert hit.status_code == 200
    for request in (client.post("/rooms", headers=host), client.get(f"/rooms/{uncached}")):
        response, seconds = await timed(request)
        assert response.status_code == 503
        assert response.json()["error"] == "database_unavailable"
        assert response.headers["retry-after"] == "1"
        assert seconds < 2.0, f"503 took {seconds:.2f}s"
    ready, seconds = await timed(client.get("/health/ready"))
    assert ready.status_code == 503
    assert ready.json()["postgres"] == "down"
    assert seconds < 2.0
    assert hit_seconds < 1.0

    postgres_proxy.set_mode(Mode.PASS)

    async def recovered() -> bool:
        return (await client.post("/rooms", headers=host)).status_code == 201

    assert await eventually(recovered, within=5.0)
    assert (await client.get(f"/rooms/{uncached}")).status_code == 200


async def test_postgres_down_at_start_the_service_starts_and_recovers(
    database_url, settings_with, postgres_proxy, host
) -> None:
    postgres_proxy.set_mode(Mode.REFUSE)
    settings = settings_with(database_url=postgres_url_via(database_url, postgres_proxy))
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503
        assert (await client.post("/rooms", headers=host)).status_code == 503

        postgres_proxy.set_mode(Mode.PASS)
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.post("/rooms", headers=host)).status_code == 201
