"""The Redis client, and the one guarded way the service calls Redis on its request paths.

Redis is an accelerator and a mailbox here, never a requirement: a guarded call degrades to a default
when Redis is down or slow (the caller decides what that means), and a circuit breaker makes an
outage cost nothing once it is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from common.metrics import Metrics
from common.redis.breaker import CircuitBreaker
from common.redis.scripts import LuaScript
from common.settings import Settings, require

T = TypeVar("T")
R = TypeVar("R", bound=redis.Redis)

# One client for the rooms Redis, whatever its topology. Both kinds take the same commands; a
# cluster client routes each to the node of its key's slot.
RedisClient: TypeAlias = "redis.Redis | RedisCluster"
AnyPipeline: TypeAlias = "Pipeline | ClusterPipeline"

# What a guarded call counts as "Redis is unavailable": anything else is a bug and propagates. (A
# cluster client that reaches no node says so with RedisClusterException, which is not a RedisError.)
REDIS_UNAVAILABLE = (RedisError, RedisClusterException, OSError, TimeoutError)


def create_redis(settings: Settings, timeout: float, *, bounded_by_caller: bool = False) -> RedisClient:
    """The client of the rooms Redis in the configured mode, its connects and commands bounded by
    `timeout` (redis-py waits forever by default).

    `bounded_by_caller`: every command is sent under the caller's own `asyncio.timeout` (as
    `GuardedRedis` does), so the per-socket timeout is left off. redis-py implements it with
    `asyncio.wait_for`, a new task for every command sent, which costs the hot path more than the
    rest of the command.
    """
    socket_timeout = None if bounded_by_caller else timeout
    if settings.redis_mode == "cluster":
        first = urlsplit(settings.redis_url.split(",", 1)[0])  # its credentials hold for every node
        cluster: RedisCluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.cluster_nodes],
            username=first.username or None,
            password=first.password or None,
            ssl=first.scheme == "rediss",
            max_connections=settings.redis_max_connections,  # per node
            socket_timeout=socket_timeout,
            socket_connect_timeout=timeout,
            # A moved slot or a failover is followed (the topology is read again); the caller's bound
            # still caps how long that may take.
            require_full_coverage=True,
        )
        return cluster
    return create_node_redis(settings, timeout, redis.Redis, socket_timeout=socket_timeout)


def create_queue_redis(settings: Settings, timeout: float, client_class: type[R]) -> R:
    """The client of arq's queue: `queue_redis_url` if set, else the rooms Redis (not a cluster)."""
    if settings.queue_redis_url:
        return _from_url(settings.queue_redis_url, settings, timeout, client_class, socket_timeout=timeout)
    return create_node_redis(settings, timeout, client_class, socket_timeout=timeout)


def create_node_redis(settings: Settings, timeout: float, client_class: type[R], *, socket_timeout: float | None) -> R:
    """A client of one primary: `redis_url` (standalone), or the one the Sentinels name, followed
    through failovers (sentinel)."""
    if settings.redis_mode == "sentinel":
        bounds = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=bounds)  # type: ignore[no-untyped-call]
        return cast(
            R,
            sentinel.master_for(
                settings.redis_sentinel_master,
                redis_class=client_class,
                db=settings.redis_db,
                max_connections=settings.redis_max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                health_check_interval=0,
            ),
        )
    return _from_url(require(settings.redis_url, "REDIS_URL"), settings, timeout, client_class, socket_timeout)


def _from_url(url: str, settings: Settings, timeout: float, client_class: type[R], socket_timeout: float | None) -> R:
    # A blocking pool waits (boundedly) for a free connection under a burst, where the default pool
    # would fail at once and count the burst against the breaker as if Redis were down.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )
    return cast(R, client_class.from_pool(pool))  # the client owns the pool: aclose() closes its connections


async def close_redis(client: RedisClient) -> None:
    """Close the client, its connections, and in sentinel mode its connections to the Sentinels."""
    pool = getattr(client, "connection_pool", None)
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


Stage = Callable[[AnyPipeline], None]


class GuardedRedis:
    """Calls to Redis bounded by `timeout` and watched by a breaker; never raises for Redis being unavailable.

    `scripts` are the Lua scripts its callers run by EVALSHA: a Redis that restarted, or a node that
    never saw them, does not know them, and `pipeline` loads them again.
    """

    def __init__(
        self, client: RedisClient, settings: Settings, metrics: Metrics, timeout: float, scripts: Sequence[LuaScript]
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._breaker = CircuitBreaker(settings.redis_breaker_threshold, settings.redis_retry_seconds)
        self._metrics = metrics
        self._scripts = {script.sha: script for script in scripts}
        self._seeds = settings.cluster_nodes if settings.redis_mode == "cluster" else []

    @property
    def available(self) -> bool:
        """False while the breaker is open, that is while Redis is known to be down."""
        return not self._breaker.is_open

    async def call(self, command: Callable[[RedisClient], Awaitable[T]], default: T) -> T:
        """`command(client)` within the bound; `default` if Redis is unavailable or known to be down."""
        if not self._breaker.allow():
            self._metrics.incr("cache_skipped_total")
            return default
        recovering = self._breaker.is_open
        if recovering and isinstance(self._client, RedisCluster):
            _restore_seeds(self._client, self._seeds)
        try:
            async with asyncio.timeout(self._timeout):
                result = await command(self._client)
                if recovering:
                    # Redis is back, perhaps as a promoted replica or a restarted server that has
                    # never seen the scripts: load them before a pipeline could meet NOSCRIPT after
                    # its later commands ran (the event before its cache write).
                    await self._load_scripts(self._client)
        except REDIS_UNAVAILABLE:
            self._breaker.record_failure()
            self._metrics.incr("cache_errors_total")
            return default
        except BaseException:
            self._breaker.record_abandoned()
            raise
        self._breaker.record_success()
        return result

    async def pipeline(self, *stages: Stage) -> list[Any] | None:
        """The commands that `stages` queue, run in order; their results, or None if Redis is
        unavailable or any command failed (then not all of them ran).

        The order holds across keys and nodes: on one server every stage goes in one round trip, on
        one connection; a cluster pipeline sends to each node at once, so there each stage is sent
        only once the one before it has been answered.
        """
        return await self.call(lambda client: self._run(client, stages), default=None)

    async def _run(self, client: RedisClient, stages: Sequence[Stage]) -> list[Any]:
        if not isinstance(client, RedisCluster):
            return await self._run_pipeline(client, stages)
        results: list[Any] = []
        for stage in stages:
            results += await self._run_pipeline(client, [stage])
        return results

    async def _run_pipeline(self, client: RedisClient, stages: Sequence[Stage]) -> list[Any]:
        """Raises the first error any command met. Script calls that met NOSCRIPT (Redis restarted, or
        a failover promoted a replica that never loaded the script) failed alone, the other commands
        having run: the scripts are loaded (on every primary of a cluster) and just those calls run again."""
        pipe = client.pipeline(transaction=False)
        for stage in stages:
            stage(pipe)
        queued = _queued(pipe)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        unscripted = [
            i
            for i, result in enumerate(results)
            if isinstance(result, NoScriptError) and str(queued[i][0][1]) in self._scripts
        ]
        if unscripted:
            for sha in {str(queued[i][0][1]) for i in unscripted}:
                await client.script_load(self._scripts[sha].source)
            again = client.pipeline(transaction=False)
            for i in unscripted:
                args, options = queued[i]
                again.execute_command(*args, **options)
            for i, result in zip(unscripted, await again.execute(raise_on_error=False), strict=True):
                results[i] = result
        for (args, _), result in zip(queued, results, strict=True):
            if isinstance(result, Exception):
                # Name the failing command, as redis-py does when it raises from a pipeline itself.
                result.args = (f"{args[0]} in a pipeline failed: {result.args[0] if result.args else ''}",)
                raise result
        return results

    async def load_scripts(self) -> None:
        """Load the scripts now (best effort), so that the first writes need no second round trip."""
        await self.call(self._load_scripts, default=None)

    async def _load_scripts(self, client: RedisClient) -> None:
        for script in self._scripts.values():
            await client.script_load(script.source)  # on every primary of a cluster

    async def ping(self) -> bool:
        """Whether Redis answers now. Goes through the breaker, so it also serves as its probe."""
        return bool(await self.call(lambda client: client.ping(), default=False))


async def primaries_identity(client: RedisClient) -> str:
    """Who the primaries that hold the data are: `run_id:master_replid` of the one server, or of every
    master of a cluster. A restart changes the run id, a promotion the replication id."""
    if isinstance(client, RedisCluster):
        infos: dict[str, Any] = await client.info(target_nodes=RedisCluster.PRIMARIES)
        found = [infos] if "run_id" in infos else list(infos.values())
    else:
        found = [await client.info()]
    return ",".join(sorted(f"{info['run_id']}:{info['master_replid']}" for info in found))


def _restore_seeds(client: RedisCluster, seeds: Sequence[tuple[str, int]]) -> None:
    """Put the configured nodes back among those the client discovers the cluster from.

    redis-py drops a node from that list when a command to it fails to connect, and does not put it
    back: after an outage of the whole cluster the list can be empty, and the client would never
    find the cluster again without this.
    """
    manager = client.nodes_manager
    for host, port in seeds:
        node = ClusterNode(host, port, **manager.connection_kwargs)
        manager.startup_nodes.setdefault(node.name, node)


def _queued(pipe: AnyPipeline) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The commands queued on a pipeline, as (args, options): read before `execute` empties it."""
    if isinstance(pipe, ClusterPipeline):
        return [(command.args, dict(command.kwargs)) for command in pipe._command_stack]
    return [(args, dict(options)) for args, options in pipe.command_stack]
