"""The Redis room cache (`room:{roomId}`), bounded by a timeout and a circuit breaker.

Redis is an accelerator here, never a requirement: every method degrades to "not cached" when Redis
is down or slow, and the breaker makes an outage cost nothing once it is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError

from common.breaker import CircuitBreaker
from common.metrics import Metrics
from common.rooms import ROOM_ENCODER, Room, RoomView
from common.settings import Settings, require

T = TypeVar("T")

_VIEW_DECODER = msgspec.json.Decoder(RoomView)


def room_key(room_id: str) -> str:
    """The Redis key Signaling reads. Part of the contract in docs/signaling.md."""
    return f"room:{room_id}"


def create_redis(settings: Settings) -> redis.Redis:
    """A client whose every connect and command is bounded: redis-py waits forever by default."""
    # A blocking pool waits (boundedly) for a free connection under a burst, where the default pool
    # would fail at once and count the burst against the breaker as if Redis were down.
    pool = redis.BlockingConnectionPool.from_url(
        require(settings.redis_url, "REDIS_URL"),
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry_on_timeout=False,
        health_check_interval=0,
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


class RoomCache:
    """Reads and writes room objects; never raises for Redis being unavailable."""

    def __init__(self, client: redis.Redis, settings: Settings, metrics: Metrics) -> None:
        self._client = client
        self._timeout = settings.redis_timeout_seconds
        self._breaker = CircuitBreaker(settings.redis_breaker_threshold, settings.redis_retry_seconds)
        self._metrics = metrics

    @property
    def available(self) -> bool:
        """False while the breaker is open, that is while Redis is known to be down."""
        return not self._breaker.is_open

    async def get_view(self, room_id: str) -> RoomView | None:
        """The cached room as clients see it, or None on a miss, an outage or an unreadable value."""
        raw = await self._call(lambda: self._client.get(room_key(room_id)), default=None)
        if raw is None:
            self._metrics.incr("cache_misses_total")
            return None
        try:
            view = _VIEW_DECODER.decode(raw)
        except msgspec.DecodeError:
            self._metrics.incr("cache_misses_total")
            return None  # not ours or from an incompatible version: Postgres answers and overwrites it
        self._metrics.incr("cache_hits_total")
        return view

    async def put(self, room: Room) -> bool:
        """Cache a live room until it expires. Returns False (and counts it) if the write did not happen."""
        expire_at_ms = _epoch_ms(room.expires_at)
        written = await self._call(
            lambda: self._client.set(room_key(room.room_id), ROOM_ENCODER.encode(room), pxat=expire_at_ms),
            default=False,
        )
        if not written:
            self._metrics.incr("cache_writes_skipped_total")
        return bool(written)

    async def ping(self) -> bool:
        """Whether Redis answers now. Goes through the breaker, so it also serves as its probe."""
        return bool(await self._call(self._client.ping, default=False))

    async def _call(self, command: Callable[[], Awaitable[T]], default: T) -> T:
        if not self._breaker.allow():
            self._metrics.incr("cache_skipped_total")
            return default
        try:
            async with asyncio.timeout(self._timeout):
                result = await command()
        except (RedisError, OSError, TimeoutError):
            self._breaker.record_failure()
            self._metrics.incr("cache_errors_total")
            return default
        except BaseException:
            self._breaker.record_abandoned()
            raise
        self._breaker.record_success()
        return result


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
