"""What the service keeps in Redis: room objects `room:{roomId}` and the room event stream.

Redis is an accelerator and a mailbox here, never a requirement: every method degrades to "not done"
when Redis is down or slow (the caller decides what that means), and a circuit breaker makes an
outage cost nothing once it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

import msgspec
import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError

from common.breaker import CircuitBreaker
from common.events import RoomEvent, retention_floor, stream_fields
from common.lua import PUT_ROOM_LUA
from common.metrics import Metrics
from common.rooms import ROOM_ENCODER, Room, RoomView
from common.settings import Settings, require

T = TypeVar("T")

_PUT_ROOM_SHA = hashlib.sha1(PUT_ROOM_LUA.encode()).hexdigest()  # noqa: S324 - the name Redis gives a script
R = TypeVar("R", bound=redis.Redis)

_VIEW_DECODER = msgspec.json.Decoder(RoomView)


def room_key(room_id: str) -> str:
    """The Redis key Signaling reads. Part of the contract in docs/signaling.md."""
    return f"room:{room_id}"


def participants_key(room_id: str) -> str:
    """The room's participant set (common/lua/join.lua). Its hash tag puts it in `room:<roomId>`'s cluster slot."""
    return "{" + room_key(room_id) + "}:participants"


def ended_room_key(room_id: str) -> str:
    """Marks a room that has ended, until its lifetime is over: no writer may cache it again."""
    return f"{{room:{room_id}}}:ended"


def missing_room_key(room_id: str) -> str:
    """Marks a code recently found not to exist (the hash tag keeps it in the room key's cluster slot)."""
    return f"{{room:{room_id}}}:missing"


def _window(kind: str, client: str) -> tuple[str, int]:
    """The fixed one-minute window counter of `client` for `kind`, and seconds until the window ends."""
    now = time.time()
    return f"ratelimit:{kind}:{client}:{int(now // 60)}", 60 - int(now % 60)


class Lookup(NamedTuple):
    """What one round trip tells about a room code."""

    view: RoomView | None
    known_missing: bool
    known_ended: bool


def create_redis(settings: Settings, timeout: float, client_class: type[R], *, bounded_by_caller: bool = False) -> R:
    """A client whose connects and commands are bounded by `timeout`: redis-py waits forever by default.

    `bounded_by_caller`: every command is sent under the caller's own `asyncio.timeout` (as RoomCache
    does), so the per-socket timeout is left off. redis-py implements it with `asyncio.wait_for`,
    a new task for every command sent, which costs the hot path more than the rest of the command.
    """
    # A blocking pool waits (boundedly) for a free connection under a burst, where the default pool
    # would fail at once and count the burst against the breaker as if Redis were down.
    pool = redis.BlockingConnectionPool.from_url(
        require(settings.redis_url, "REDIS_URL"),
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_timeout=None if bounded_by_caller else timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )
    return cast(R, client_class.from_pool(pool))  # the client owns the pool: aclose() closes its connections


class RoomCache:
    """Room objects and room events in Redis; never raises for Redis being unavailable."""

    def __init__(self, client: redis.Redis, settings: Settings, metrics: Metrics, timeout: float) -> None:
        self.client = client
        self._timeout = timeout
        self._stream = settings.stream_name
        self._retention = settings.stream_retention_seconds
        self._breaker = CircuitBreaker(settings.redis_breaker_threshold, settings.redis_retry_seconds)
        self._metrics = metrics

    @property
    def available(self) -> bool:
        """False while the breaker is open, that is while Redis is known to be down."""
        return not self._breaker.is_open

    async def lookup(self, room_id: str) -> Lookup:
        """The cached room, and whether the code is known not to exist; neither while Redis is unavailable.

        One MGET: the keys share the room's cluster slot, and it costs what a plain GET costs.
        """
        keys = (room_key(room_id), missing_room_key(room_id), ended_room_key(room_id))
        found = await self._call(lambda: self.client.mget(*keys), default=None)
        if found is None:
            self._metrics.incr("cache_misses_total")
            return Lookup(None, known_missing=False, known_ended=False)
        raw, missing_mark, ended_mark = found
        view = None
        if raw is not None:
            # A value not ours or from an incompatible version counts as a miss: Postgres answers and overwrites it.
            with contextlib.suppress(msgspec.DecodeError):
                view = _VIEW_DECODER.decode(raw)
        self._metrics.incr("cache_hits_total" if view is not None else "cache_misses_total")
        return Lookup(view, known_missing=missing_mark is not None, known_ended=ended_mark is not None)

    async def record_miss(
        self, client: str, unknown_room_id: str | None, remember_seconds: int
    ) -> tuple[int, int] | None:
        """Count a 404/410 against the client, and for a 404 remember the code as missing for a while.

        Returns the client's misses in this minute and the seconds left in it; None if Redis could not say.
        """
        counter, retry_after = _window("miss", client)
        pipe = self.client.pipeline(transaction=False)
        if unknown_room_id is not None:
            pipe.set(missing_room_key(unknown_room_id), b"1", ex=remember_seconds)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        counted = await self._call(pipe.execute, default=None)
        return None if counted is None else (int(counted[-2]), retry_after)

    async def count_creation(self, host: str) -> tuple[int, int] | None:
        """Count a creation in the host's window: (count including this one, seconds left); None if unknown."""
        counter, retry_after = _window("create", host)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        counted = await self._call(pipe.execute, default=None)
        return None if counted is None else (int(counted[0]), retry_after)

    async def put(self, room: Room) -> bool:
        """Cache a live room until it expires (put_room.lua may keep a newer object in place).

        Returns False, and counts it, if Redis could not be reached."""
        return await self.write(put=[room])

    async def write(
        self, *, put: Sequence[Room] = (), end: Sequence[Room] = (), publish: Sequence[RoomEvent] = ()
    ) -> bool:
        """In one round trip and in this order: cache rooms, drop ended rooms, append events to the stream.

        The order is the contract: a consumer that reads `room.created` finds `room:{roomId}`, and one
        that reads `room.ended` no longer does. Returns whether it all happened.
        """
        floor = retention_floor(self._retention)

        def commands(pipe: Pipeline) -> None:
            for room in put:
                self._put(pipe, room, only_if_absent=False)
                pipe.delete(missing_room_key(room.room_id))  # a code probed before it was drawn exists now
            for room in end:
                # The mark keeps any writer with an older read from caching the room again; the
                # participants go with the room object (all three keys share its cluster slot).
                until = max(_epoch_ms(room.expires_at), _epoch_ms_now() + 1000)
                pipe.set(ended_room_key(room.room_id), b"1", pxat=until)
                pipe.delete(room_key(room.room_id), participants_key(room.room_id))
            for event in publish:
                pipe.xadd(self._stream, stream_fields(event), minid=floor, approximate=True)  # type: ignore[arg-type]

        done = await self._call(lambda: self._pipeline(commands), default=None)
        if done is None and put:
            self._metrics.incr("cache_writes_skipped_total", len(put))
        return done is not None

    async def restore(self, rooms: Sequence[Room]) -> int | None:
        """Cache those of these rooms that have no object at all (and have not ended meanwhile).

        Returns how many were written, or None if Redis could not be reached.
        """

        def commands(pipe: Pipeline) -> None:
            for room in rooms:
                self._put(pipe, room, only_if_absent=True)

        written = await self._call(lambda: self._pipeline(commands), default=None)
        if written is None:
            return None
        return sum(1 for ok in written if ok)

    @staticmethod
    def _put(pipe: Pipeline, room: Room, *, only_if_absent: bool) -> None:
        """Queue put_room.lua for `room` (EVALSHA; `_pipeline` loads the script when Redis lacks it)."""
        # redis-py sends bytes as they are, though its stubs say str.
        pipe.evalsha(
            _PUT_ROOM_SHA,
            2,
            room_key(room.room_id),
            ended_room_key(room.room_id),
            ROOM_ENCODER.encode(room),  # type: ignore[arg-type]
            str(room.version),
            str(_epoch_ms(room.expires_at)),
            "nx" if only_if_absent else "",
        )

    async def _pipeline(self, commands: Callable[[Pipeline], None]) -> list[Any]:
        """Run queued commands in one round trip, raising the first error any of them met.

        A Redis that restarted has forgotten put_room.lua: the script calls then fail (alone: the
        other commands have run), so the script is loaded and just those calls run again.
        """
        pipe = self.client.pipeline(transaction=False)
        commands(pipe)
        queued = list(pipe.command_stack)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        unscripted = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unscripted:
            await self.client.script_load(PUT_ROOM_LUA)
            again = self.client.pipeline(transaction=False)
            for i in unscripted:
                args, options = queued[i]
                again.execute_command(*args, **options)
            for i, result in zip(unscripted, await again.execute(raise_on_error=False), strict=True):
                results[i] = result
        pipe.raise_first_error(queued, results)  # names the failing command, as redis-py would have
        return results

    async def load_scripts(self) -> None:
        """Load put_room.lua now (best effort), so that the first writes need no second round trip."""
        await self._call(lambda: self.client.script_load(PUT_ROOM_LUA), default=None)

    async def ping(self) -> bool:
        """Whether Redis answers now. Goes through the breaker, so it also serves as its probe."""
        return bool(await self._call(self.client.ping, default=False))

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


def _epoch_ms_now() -> int:
    return int(time.time() * 1000)
