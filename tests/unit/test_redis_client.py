"""The clients the topologies get, as configured (nothing connects until a command is sent)."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from common.environment import load_settings
from common.redis.client import create_redis


async def test_a_cluster_client_takes_the_credentials_and_tls_of_the_first_node() -> None:
    settings = load_settings(
        {
            "ROOMS_REDIS_MODE": "cluster",
            "ROOMS_REDIS_URL": "rediss://rooms:secret@r1:7001,r2:7002",
            "ROOMS_QUEUE_REDIS_URL": "redis://queue:6379/0",
        }
    )
    client = create_redis(settings, 0.5)
    assert isinstance(client, RedisCluster)
    options = client.nodes_manager.connection_kwargs
    assert (options["username"], options["password"]) == ("rooms", "secret")
    assert options.get("connection_class").__name__ == "SSLConnection"
    assert sorted(client.nodes_manager.startup_nodes) == ["r1:7001", "r2:7002"]
    await client.aclose()
