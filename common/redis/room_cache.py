"""Room objects in Redis: `room:{roomId}` (what Signaling reads) and the marks beside it.

Every write of a room object goes through put_room.lua, by way of `RoomCache.write`: a newer
`version` stays in place and an ended room is never cached again. What is written is the object's
JSON as the database made it (`CachedRoom.data`), as it is: the database defines the object.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import msgspec

from common.metrics import Metrics
from common.redis.batch import Stage
from common.redis.commands import CommandQueue
from common.redis.guarded import GuardedRedis
from common.redis.keys import ended_room_key, missing_room_key, participants_key, room_key
from common.redis.scripts import lua_script
from common.rooms.model import CachedRoom, CachedView, Room, RoomView, to_view

log = logging.getLogger(__name__)

PUT_ROOM = lua_script(__package__, "lua/put_room.lua")
END_ROOM = lua_script(__package__, "lua/end_room.lua")
# What a GuardedRedis that writes rooms loads (and loads again after a failover or restart).
CACHE_SCRIPTS = (PUT_ROOM, END_ROOM)

_VIEW_DECODER = msgspec.json.Decoder(CachedView)
_ROOM_DECODER = msgspec.json.Decoder(Room)

T = TypeVar("T")


class Lookup(NamedTuple):
    """What one round trip tells about a room code."""

    view: RoomView | None
    known_missing: bool
    known_ended: bool


class RoomLookup(NamedTuple):
    """`Lookup` with the whole cached room object."""

    room: Room | None
    known_missing: bool
    known_ended: bool


class CacheWrite(NamedTuple):
    """What one `RoomCache.write_each` did."""

    written: int  # rooms of `put` written (put_room.lua may keep a newer object in place)
    failed: tuple[str, ...]  # codes of the rooms whose commands Redis refused (logged and counted)
    then: list[Any]  # a result per command `then` queued, a refused command's error in its place


class RoomCache:
    """Reads and writes room objects through the guarded client: nothing here raises for Redis being down.

    `early_join_seconds`: how long before its start a room admits joins (ROOMS_EARLY_JOIN_SECONDS),
    written into each object as `opensAtMs` for join.lua.
    """

    def __init__(self, redis: GuardedRedis, metrics: Metrics, early_join_seconds: int) -> None:
        self._redis = redis
        self._metrics = metrics
        self._early_join_ms = early_join_seconds * 1000

    async def lookup(self, room_id: str) -> Lookup:
        """The cached room, and whether the code is known not to exist or to have ended; none of these
        while Redis is unavailable. The keys share the room's cluster slot: one MGET, or a share of
        one with the other requests' lookups of the moment."""
        cached, known_missing, known_ended = await self._lookup(room_id, _VIEW_DECODER.decode)
        return Lookup(None if cached is None else to_view(cached), known_missing, known_ended)

    async def lookup_room(self, room_id: str) -> RoomLookup:
        """As `lookup`, with the whole room object (its internal id too) rather than what clients see."""
        room, known_missing, known_ended = await self._lookup(room_id, _ROOM_DECODER.decode)
        return RoomLookup(room, known_missing, known_ended)

    async def _lookup(self, room_id: str, decode: Callable[[bytes], T]) -> tuple[T | None, bool, bool]:
        keys = (room_key(room_id), missing_room_key(room_id), ended_room_key(room_id))
        found = await self._redis.read(keys)
        if found is None:
            self._metrics.incr("cache_misses_total")
            return None, False, False
        raw, missing_mark, ended_mark = found
        decoded = None
        if raw is not None:
            # A value not ours or from an incompatible version counts as a miss: Postgres answers and overwrites it.
            with contextlib.suppress(msgspec.DecodeError):
                decoded = decode(raw)
        self._metrics.incr("cache_hits_total" if decoded is not None else "cache_misses_total")
        return decoded, missing_mark is not None, ended_mark is not None

    async def write(
        self,
        *,
        put: Sequence[CachedRoom] = (),
        end: Sequence[Room] = (),
        only_if_absent: bool = False,
    ) -> int | None:
        """Cache `put` and drop `end` (see `_queue`). Returns how many of `put` were written, or None
        if Redis could not be reached or a command failed: then not all of it happened."""
        done = await self.write_each(put=put, end=end, only_if_absent=only_if_absent)
        return None if done is None or done.failed else done.written

    async def write_each(
        self,
        *,
        put: Sequence[CachedRoom] = (),
        end: Sequence[Room] = (),
        only_if_absent: bool = False,
        then: Stage | None = None,
    ) -> CacheWrite | None:
        """As `write`, then run what `then` queues: in one round trip on one server; on a cluster,
        `then` once the cache has answered (see common/redis/batch.py). A room whose commands Redis
        refuses fails alone: the others, and `then`, go on. None only if Redis could not be reached.
        """

        def cache(queue: CommandQueue) -> None:
            self._queue(queue, put=put, end=end, only_if_absent=only_if_absent)

        stages = (cache,) if then is None else (cache, then)
        results = await self._redis.pipeline_results(*stages)
        if results is None:
            # The sweep's writes (only_if_absent) are repairs that the next sweep repeats: not counted.
            if put and not only_if_absent:
                self._metrics.incr("cache_writes_skipped_total", len(put))
            return None
        return self._read_results(results, put=put, end=end, only_if_absent=only_if_absent)

    def _read_results(
        self, results: list[Any], *, put: Sequence[CachedRoom], end: Sequence[Room], only_if_absent: bool
    ) -> CacheWrite:
        written = replaced = failed_puts = 0
        failed: list[tuple[str, Exception]] = []
        at = 0
        for room, _ in put:
            count = _commands_per_put(room, only_if_absent)
            mine, at = results[at : at + count], at + count
            if error := next((result for result in mine if isinstance(result, Exception)), None):
                failed.append((room.room_id, error))
                failed_puts += 1
                continue
            was_written, foreign = mine[0]
            written += int(was_written)
            replaced += int(foreign)
        ends_from = at
        for room, result in zip(end, results[ends_from : ends_from + len(end)], strict=True):
            if isinstance(result, Exception):
                failed.append((room.room_id, result))
        if replaced:
            log.warning("replaced %d values at room keys that another writer had put there", replaced)
            self._metrics.incr("cache_foreign_values_replaced_total", replaced)
        if failed:
            log.warning("Redis refused the cache writes of %d rooms: %s", len(failed), failed[:10])
        if failed_puts and not only_if_absent:  # the sweep's repairs are repeated by the next sweep
            self._metrics.incr("cache_writes_skipped_total", failed_puts)
        return CacheWrite(written, tuple(code for code, _ in failed), results[ends_from + len(end) :])

    def _queue(
        self, queue: CommandQueue, *, put: Sequence[CachedRoom], end: Sequence[Room], only_if_absent: bool
    ) -> None:
        """Queue, in this order:

        - for each room of `put`: put_room.lua, which caches it until it expires unless a newer object
          or the ended mark is there (or, with `only_if_absent`, any room object at all: what the
          sweep wants), replacing a value some other writer left at its keys, and moves the expiry of
          its participants to the room's end; then, for a new room (version 1) unless
          `only_if_absent`, forget that its code was missing (probed before it was drawn: only a new
          room's code can have been, and each write of version 1, the create's or the relay's, forgets);
        - for each room of `end`: end_room.lua: the ended mark, the room object and participants gone,
          the session in progress ended with the room (nothing another writer leaves there fails it).
        """
        for room, data in put:
            queue.execute_command(  # bytes arguments, which redis-py's evalsha is not typed to take
                "EVALSHA",
                PUT_ROOM.sha,
                3,
                room_key(room.room_id),
                ended_room_key(room.room_id),
                participants_key(room.room_id),
                self._with_opening(room, data),
                str(room.version),
                str(_epoch_ms(room.expires_at)),
                "nx" if only_if_absent else "",
                *room.removed_ids,
            )
            if _commands_per_put(room, only_if_absent) == 2:
                queue.delete(missing_room_key(room.room_id))
        for room in end:
            # The mark keeps any writer with an older read from caching the room again, until the room
            # would have ended anyway.
            expires = _epoch_ms(room.expires_at)
            until = max(expires, int(time.time() * 1000) + 1000)
            queue.execute_command(
                "EVALSHA",
                END_ROOM.sha,
                3,
                room_key(room.room_id),
                ended_room_key(room.room_id),
                participants_key(room.room_id),
                str(until),
                str(expires),
            )

    def _with_opening(self, room: Room, data: str) -> str:
        """The object as the database made it, with `opensAtMs` (epoch ms) added: the moment join.lua
        admits from. It depends on this deployment's early-join allowance, which the database does not
        know; the object is a JSON object, so the field goes before its closing brace."""
        opens = _epoch_ms(room.start) - self._early_join_ms
        return f'{data[:-1]},"opensAtMs":{opens}}}'


def _commands_per_put(room: Room, only_if_absent: bool) -> int:
    """put_room.lua, and for a new room's write (not the sweep's) the DEL of the missing mark."""
    return 2 if room.version == 1 and not only_if_absent else 1


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
