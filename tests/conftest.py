"""Real servers for the tests: embedded ones by default, or those named by ROOMS_TEST_*_URL.

Either way the suite works in a database it creates (and drops) and in Redis keys it creates; it
never flushes or drops anything it did not make.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as redis
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.settings import Settings
from roomservice.embedded import embedded_postgres, embedded_redis, ensure_database
from roomservice.migrate import migrate
from tests.support.faultproxy import FaultProxy, postgres_upstream, redis_upstream
from tests.support.settings import make_settings
from worker.resources import WorkerResources, worker_resources


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Postgres server; tests get their own database on it (see `database_url`)."""
    given = os.environ.get("ROOMS_TEST_DATABASE_URL")
    if given:
        yield given
        return
    with embedded_postgres(tmp_path_factory.mktemp("postgres") / "data", persist=False) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server (or a db index of one, e.g. redis://127.0.0.1:6379/15)."""
    given = os.environ.get("ROOMS_TEST_REDIS_URL")
    if given:
        yield given
        return
    with embedded_redis(tmp_path_factory.mktemp("valkey"), persist=False) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A migrated database that this test session created and drops at the end."""
    name = f"roomservice_test_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(ensure_database(postgres_server_url, name))
    asyncio.run(migrate(url))
    yield url
    asyncio.run(drop_database(postgres_server_url, name))


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def stream_name() -> str:
    """A room event stream of the test's own, so tests never see each other's events."""
    return f"test:{uuid.uuid4().hex[:12]}:events"


@pytest.fixture
def settings(database_url: str, redis_url: str, stream_name: str) -> Settings:
    return make_settings(database_url, redis_url, stream_name=stream_name)


@pytest.fixture
async def worker_res(settings: Settings) -> AsyncIterator[WorkerResources]:
    async with worker_resources(settings) as res:
        yield res


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url, timeout=10)
    yield conn
    await conn.close()


@pytest.fixture
def host() -> dict[str, str]:
    """Headers of a fresh host, so each test's rooms are its own."""
    return {"X-User-Id": str(uuid.uuid4())}


@pytest.fixture
def postgres_proxy(database_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(postgres_upstream(database_url)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(redis_upstream(redis_url)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def scratch_database(postgres_server_url: str) -> Iterator[str]:
    """An empty, unmigrated database for migration tests, dropped afterwards."""
    name = f"roomservice_scratch_{uuid.uuid4().hex[:12]}"
    yield asyncio.run(ensure_database(postgres_server_url, name))
    asyncio.run(drop_database(postgres_server_url, name))
