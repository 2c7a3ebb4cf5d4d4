"""A command Redis refuses fails itself alone: the other commands of its request, later stages and
other requests keep their results, on every topology."""

from __future__ import annotations

import asyncio
import uuid

from redis.exceptions import ResponseError

from common.metrics import Metrics
from common.redis.guarded import GuardedRedis


async def test_a_refused_command_fails_itself_alone(redis_client, settings, stream_name) -> None:
    metrics = Metrics()
    guarded = GuardedRedis(redis_client, settings, metrics, timeout=5, scripts=[])
    tag = "{" + uuid.uuid4().hex + "}"
    await redis_client.sadd(f"{tag}:set", "not a string")
    await redis_client.set(f"{tag}:string", "value")

    first, later, other = await asyncio.gather(
        guarded.pipeline_results(lambda q: q.get(f"{tag}:set"), lambda q: q.xadd(stream_name, {"a": "1"})),
        guarded.pipeline(lambda q: q.get(f"{tag}:set")),
        guarded.read([f"{tag}:string"]),
    )

    assert first is not None
    assert isinstance(first[0], ResponseError)
    assert "WRONGTYPE" in str(first[0])
    assert isinstance(first[1], bytes)  # the XADD of the later stage went, and its id came back
    assert await redis_client.xlen(stream_name) == 1
    assert later is None  # `pipeline` answers None when any of its commands failed
    assert other == [b"value"]
    assert metrics.count("cache_errors_total") == 2
    await redis_client.delete(f"{tag}:set", f"{tag}:string")
