"""Abuse protection: miss limits, the negative cache, creation limits; all fail open without Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.rooms.codes import generate_room_code
from tests.support.faultproxy import Mode, redis_url_via
from tests.support.settings import make_settings

LIMIT = 5


@pytest.fixture
async def limited(settings_with) -> AsyncIterator[AsyncTestClient]:
    settings = settings_with(miss_limit_per_minute=LIMIT, create_limit_per_minute=LIMIT)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture(autouse=True)
async def not_at_a_minute_boundary() -> None:
    """The limits count per clock minute: start well inside one, so a test's requests share it."""
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)


def unknown() -> str:
    return generate_room_code()


async def test_a_client_that_keeps_missing_is_stopped(limited, host) -> None:
    existing = (await limited.post("/rooms", headers=host)).json()["roomId"]
    for _ in range(LIMIT):
        assert (await limited.get(f"/rooms/{unknown()}", headers=host)).status_code == 404
    assert (await limited.get(f"/rooms/{existing}", headers=host)).status_code == 200  # hits do not count

    over = await limited.get(f"/rooms/{unknown()}", headers=host)
    blocked = await limited.get(f"/rooms/{existing}", headers=host)

    assert over.status_code == 429
    assert over.json()["error"] == "rate_limited"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert blocked.status_code == 429  # even for a room that exists: no oracle left to use
    other = {"X-User-Id": str(uuid.uuid4())}
    assert (await limited.get(f"/rooms/{existing}", headers=other)).status_code == 200


async def test_without_a_user_id_the_peer_address_is_limited(limited, redis_client) -> None:
    # Every anonymous request of the suite comes from the test client's one address: start afresh.
    await redis_client.delete(*[key async for key in redis_client.scan_iter("ratelimit:miss:ip:testclient:*")] or ["-"])
    for _ in range(LIMIT):
        assert (await limited.get(f"/rooms/{unknown()}")).status_code == 404
    assert (await limited.get(f"/rooms/{unknown()}")).status_code == 429
    # A user id is a different client from the address it comes from.
    assert (await limited.get(f"/rooms/{unknown()}", headers={"X-User-Id": str(uuid.uuid4())})).status_code == 404


async def test_history_lookups_of_unknown_rooms_count_as_misses(limited, host) -> None:
    for _ in range(LIMIT):
        assert (await limited.get(f"/rooms/{unknown()}/history", headers=host)).status_code == 404
    assert (await limited.get(f"/rooms/{unknown()}/history", headers=host)).status_code == 429
    assert (await limited.get(f"/rooms/{unknown()}", headers=host)).status_code == 429  # one allowance for both


async def test_ended_rooms_count_as_misses(limited, host) -> None:
    code = (await limited.post("/rooms", headers=host)).json()["roomId"]
    assert (await limited.delete(f"/rooms/{code}", headers=host)).status_code == 204
    asker = {"X-User-Id": str(uuid.uuid4())}
    for _ in range(LIMIT):
        assert (await limited.get(f"/rooms/{code}", headers=asker)).status_code == 410
    assert (await limited.get(f"/rooms/{code}", headers=asker)).status_code == 429


async def test_a_recent_404_is_answered_without_postgres(settings, db, host) -> None:
    probed = unknown()
    codes = iter([probed])
    async with AsyncTestClient(app=create_app(settings, new_room_code=lambda: next(codes))) as client:
        assert (await client.get(f"/rooms/{probed}")).status_code == 404
        # The room appears behind the service's back: only a lookup in Postgres could find it.
        await db.execute(
            "INSERT INTO meetings (room_id, host_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')",
            probed,
            uuid.uuid4(),
        )
        assert (await client.get(f"/rooms/{probed}")).status_code == 404  # remembered, Postgres not asked
        await db.execute("DELETE FROM meetings WHERE room_id = $1", probed)

        # Creating a room with that code clears the memory at once.
        assert (await client.post("/rooms", headers=host)).json()["roomId"] == probed
        assert (await client.get(f"/rooms/{probed}")).status_code == 200


async def test_a_host_may_create_only_so_many_rooms_a_minute(limited, host) -> None:
    for _ in range(LIMIT):
        assert (await limited.post("/rooms", headers=host)).status_code == 201
    refused = await limited.post("/rooms", headers=host)
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert (await limited.post("/rooms", headers={"X-User-Id": str(uuid.uuid4())})).status_code == 201


async def test_limits_fail_open_without_redis(database_url, redis_url, redis_proxy, stream_name, host) -> None:
    settings = make_settings(
        database_url, redis_url_via(redis_url, redis_proxy), stream_name=stream_name, miss_limit_per_minute=2,
        create_limit_per_minute=2,
    )  # fmt: skip
    redis_proxy.set_mode(Mode.REFUSE)
    async with AsyncTestClient(app=create_app(settings)) as client:
        for _ in range(5):
            assert (await client.get(f"/rooms/{unknown()}", headers=host)).status_code == 404
            assert (await client.post("/rooms", headers=host)).status_code == 201
        ready = (await client.get("/health/ready")).json()
    assert ready["rateLimits"] == "fail-open"
