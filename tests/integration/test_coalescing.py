"""Requests' Redis pipelines gathered into one round trip (`GuardedRedis.pipeline`), against real Redis in
each topology: every request still gets its own answer, its own failure and its own bound."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from common.metrics import Metrics
from common.redis.client import RedisClient, close_redis, create_redis
from common.redis.guarded import GuardedRedis
from common.settings import Settings
from tests.support.faultproxy import Mode, redis_url_via
from tests.support.processes import free_port
from tests.support.settings import make_settings

Guarded = Callable[..., GuardedRedis]


@pytest.fixture
async def make_guarded(settings_with: Callable[..., Settings]) -> AsyncIterator[Guarded]:
    """GuardedRedis on this run's topology, as the API makes it; `timeout` and Settings overrides."""
    made: list[RedisClient] = []

    def make(timeout: float = 2.0, metrics: Metrics | None = None, **overrides: object) -> GuardedRedis:
        settings = settings_with(**overrides)
        client = create_redis(settings, timeout, bounded_by_caller=True)
        made.append(client)
        return GuardedRedis(client, settings, metrics or Metrics(), timeout, scripts=[])

    yield make
    for client in made:
        await close_redis(client)


@pytest.fixture
async def key(redis_client: RedisClient) -> AsyncIterator[Callable[[object], str]]:
    """Names of this test's own keys, deleted afterwards. They share one hash tag, so on a cluster they
    live on one node, like the keys of one room."""
    tag = uuid.uuid4().hex
    used: set[str] = set()

    def name(suffix: object) -> str:
        used.add(f"{{test:{tag}}}:{suffix}")
        return f"{{test:{tag}}}:{suffix}"

    yield name
    if used:
        await redis_client.delete(*used)


async def connections_received(redis_client: RedisClient) -> int:
    """Connections the primaries have accepted so far, counted by Redis itself."""
    if isinstance(redis_client, RedisCluster):
        infos: dict[str, Any] = await redis_client.info("stats", target_nodes=RedisCluster.PRIMARIES)
        return sum(info["total_connections_received"] for info in infos.values())
    return int((await redis_client.info("stats"))["total_connections_received"])


async def test_concurrent_requests_share_a_round_trip_and_each_gets_its_own_answer(
    make_guarded, key, redis_client
) -> None:
    guarded = make_guarded()
    assert await guarded.pipeline(lambda pipe: pipe.set(key("warm"), b"1")) == [True]  # a connection in the pool
    before = await connections_received(redis_client)

    answers = await asyncio.gather(
        *(guarded.pipeline(lambda pipe, i=i: (pipe.set(key(i), f"value {i}"), pipe.get(key(i)))) for i in range(200))
    )

    assert answers == [[True, f"value {i}".encode()] for i in range(200)]
    # One by one, 200 concurrent requests would have needed up to 200 connections (the pool's bound).
    assert await connections_received(redis_client) - before <= 1


async def mget_calls(redis_client: RedisClient) -> int:
    """MGET commands the primaries have run so far."""
    if isinstance(redis_client, RedisCluster):
        infos: dict[str, Any] = await redis_client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        return sum(info.get("cmdstat_mget", {}).get("calls", 0) for info in infos.values())
    return int((await redis_client.info("commandstats")).get("cmdstat_mget", {}).get("calls", 0))


async def test_concurrent_reads_share_one_mget_on_one_server(make_guarded, key, redis_client, redis_mode) -> None:
    guarded = make_guarded()
    await redis_client.set(key("shared"), b"everyone's")
    before = await mget_calls(redis_client)

    answers = await asyncio.gather(
        *(guarded.read([key(f"absent {i}"), key("shared"), key(f"absent {i}")]) for i in range(50)),
        guarded.pipeline(lambda pipe: pipe.get(key("shared"))),  # not a read: a command of its own
        guarded.read([key("shared")]),
    )

    assert list(answers) == [[None, b"everyone's", None]] * 50 + [[b"everyone's"], [b"everyone's"]]
    # A cluster cannot merge keys of different slots: there each read is an MGET of its own.
    assert await mget_calls(redis_client) - before == (51 if redis_mode == "cluster" else 1)


async def test_a_failing_command_fails_only_its_own_request(make_guarded, key, redis_client) -> None:
    guarded = make_guarded(redis_breaker_threshold=1)  # one failure counted would open it
    await redis_client.set(key("text"), b"not a number")

    answers = await asyncio.gather(
        guarded.pipeline(lambda pipe: pipe.incr(key("counter"))),
        guarded.pipeline(lambda pipe: (pipe.set(key("mine"), b"1"), pipe.incr(key("text")))),  # INCR fails
        guarded.pipeline(lambda pipe: pipe.get(key("text"))),
    )

    assert list(answers) == [[1], None, [b"not a number"]]
    assert guarded.available  # Redis answered: a refused command says nothing of Redis being down


async def test_a_request_whose_commands_cannot_be_queued_fails_alone(make_guarded, key) -> None:
    guarded = make_guarded(redis_breaker_threshold=1)

    def broken(pipe: Any) -> None:
        pipe.set(key("half"), b"1")
        raise ValueError("a bug in what this request queues")

    answers = await asyncio.gather(
        guarded.pipeline(lambda pipe: pipe.set(key("before"), b"1")),
        guarded.pipeline(broken),
        guarded.pipeline(lambda pipe: pipe.set(key("unencodable"), None)),  # redis-py refuses None
        guarded.read([key("before"), key("half")]),
        return_exceptions=True,
    )

    assert answers[0] == [True]
    assert isinstance(answers[1], ValueError)  # its own bug, raised in its own request
    assert answers[2] is None  # an argument Redis never saw: a refusal like Redis's own
    assert answers[3] == [b"1", None]  # the broken request's first command was taken back
    assert guarded.available


async def test_a_batch_that_times_out_fails_its_own_requests_within_their_bound_and_counts_once(
    make_guarded, key, redis_client
) -> None:
    # Two failures would open the breaker: five requests of one batch timing out count as one.
    guarded = make_guarded(timeout=0.3, redis_breaker_threshold=2)

    async def timed(stage: Callable[[Any], object]) -> tuple[list[Any] | None, float]:
        started = time.monotonic()
        return await guarded.pipeline(stage), time.monotonic() - started

    def setting(name: str) -> Callable[[Any], object]:
        return lambda pipe: pipe.set(name, b"1")

    # BLPOP on an empty list holds its connection for 2 s: Redis itself is slow for this batch only.
    stuck = [
        asyncio.ensure_future(timed(lambda pipe: pipe.blpop([key("empty")], timeout=2))),
        *(asyncio.ensure_future(timed(setting(key(i)))) for i in range(4)),
    ]
    await asyncio.sleep(0.05)  # the stuck batch has left; the next requests form another
    later = await guarded.pipeline(lambda pipe: (pipe.set(key("later"), b"1"), pipe.get(key("later"))))

    assert later == [True, b"1"]
    for answer, waited in await asyncio.gather(*stuck):
        assert answer is None
        assert waited < 0.3 + 0.15  # its own bound, and a scheduling margin
    assert guarded.available
    assert await guarded.pipeline(lambda pipe: pipe.get(key("later"))) == [b"1"]


async def test_a_cancelled_request_does_not_cancel_its_batch(make_guarded, key, redis_client) -> None:
    guarded = make_guarded()
    slow = asyncio.ensure_future(guarded.pipeline(lambda pipe: pipe.blpop([key("empty")], timeout=0.3)))
    cancelled = asyncio.ensure_future(guarded.pipeline(lambda pipe: pipe.set(key("cancelled"), b"1")))
    other = asyncio.ensure_future(guarded.pipeline(lambda pipe: pipe.set(key("other"), b"1")))
    await asyncio.sleep(0.1)  # the batch is out, held by the BLPOP
    cancelled.cancel()

    assert await other == [True]
    assert await slow == [None]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await redis_client.get(key("cancelled")) == b"1"  # its write went with the batch all the same


async def test_a_request_cancelled_before_its_batch_leaves_sends_nothing(make_guarded, key, redis_client) -> None:
    guarded = make_guarded()
    cancelled = asyncio.ensure_future(guarded.pipeline(lambda pipe: pipe.set(key("never"), b"1")))
    await asyncio.sleep(0)  # it has asked; the batch leaves on the next turn of the loop
    cancelled.cancel()
    sent = await guarded.pipeline(lambda pipe: pipe.set(key("sent"), b"1"))

    assert sent == [True]
    assert cancelled.cancelled()
    assert await redis_client.exists(key("never")) == 0


async def test_once_redis_may_be_back_one_request_finds_out_and_the_others_do_without(
    database_url, redis_url, redis_proxy
) -> None:
    settings = make_settings(
        database_url, redis_url_via(redis_url, redis_proxy), redis_breaker_threshold=1, redis_retry_seconds=0.3
    )
    client = create_redis(settings, 0.25, bounded_by_caller=True)
    guarded = GuardedRedis(client, settings, Metrics(), 0.25, scripts=[])
    try:
        redis_proxy.set_mode(Mode.BLACKHOLE)  # connections open, nothing ever answers
        assert await guarded.pipeline(lambda pipe: pipe.get("any")) is None
        assert not guarded.available
        await asyncio.sleep(0.35)  # the breaker lets one probe through now

        async def timed() -> float:
            started = time.monotonic()
            assert await guarded.read(["any"]) is None
            return time.monotonic() - started

        waits = sorted(await asyncio.gather(*(timed() for _ in range(50))))

        assert waits[-1] >= 0.2  # the probe waited for its bound
        assert waits[-2] < 0.05  # everyone else did without at once
    finally:
        await close_redis(client)


@pytest.mark.one_topology
async def test_while_the_breaker_is_open_a_request_sends_nothing(make_guarded, redis_mode) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: connects are refused
    metrics = Metrics()
    guarded = make_guarded(metrics=metrics, redis_url=nowhere, redis_breaker_threshold=1, redis_retry_seconds=60)
    assert await guarded.pipeline(lambda pipe: pipe.get("any")) is None  # refused: the breaker opens
    assert not guarded.available

    started = time.monotonic()
    answers = await asyncio.gather(*(guarded.pipeline(lambda pipe: pipe.get("any")) for _ in range(100)))

    assert answers == [None] * 100
    assert time.monotonic() - started < 0.05
    assert metrics.count("cache_skipped_total") == 100
