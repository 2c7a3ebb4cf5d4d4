"""The Redis client in each topology (one server, Sentinel, Cluster): made, bounded, closed, identified.

The service calls it through `common.redis.guarded.GuardedRedis` on its request paths.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisClusterException, RedisError

from common.settings import Settings, require

log = logging.getLogger(__name__)

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


# How long closing a client may take: its connections' goodbyes, not a command.
_CLOSE_TIMEOUT_SECONDS = 5.0


async def close_redis(client: RedisClient) -> None:
    """Close the client, its connections, and in sentinel mode its connections to the Sentinels.

    Bounded: a cluster client can wait without end on a topology refresh left hanging by an outage
    (its close takes the same lock), and a process on its way out must not wait for it."""
    pool = getattr(client, "connection_pool", None)
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT_SECONDS):
            await client.aclose()
            if isinstance(pool, SentinelConnectionPool):
                for sentinel in pool.sentinel_manager.sentinels:
                    await sentinel.aclose()
    except TimeoutError:
        log.warning("a Redis client did not close within %g s; left to the process's end", _CLOSE_TIMEOUT_SECONDS)


async def primaries_identity(client: RedisClient) -> str:
    """Who the primaries that hold the data are: `run_id:master_replid` of the one server, or of every
    master of a cluster. A restart changes the run id, a promotion the replication id."""
    if isinstance(client, RedisCluster):
        infos: dict[str, Any] = await client.info(target_nodes=RedisCluster.PRIMARIES)
        found = [infos] if "run_id" in infos else list(infos.values())
    else:
        found = [await client.info()]
    return ",".join(sorted(f"{info['run_id']}:{info['master_replid']}" for info in found))


def restore_seeds(client: RedisCluster, seeds: Sequence[tuple[str, int]]) -> None:
    """Put the configured nodes back among those the client discovers the cluster from.

    redis-py drops a node from that list when a command to it fails to connect, and does not put it
    back: after an outage of the whole cluster the list can be empty, and the client would never
    find the cluster again without this.
    """
    manager = client.nodes_manager
    for host, port in seeds:
        node = ClusterNode(host, port, **manager.connection_kwargs)
        manager.startup_nodes.setdefault(node.name, node)
