"""Room objects in Redis: `room:{roomId}` (what Signaling reads) and the marks beside it.

Every write of a room object goes through put_room.lua, by way of `RoomCache.write`: a newer
`version` stays in place and an ended room is never cached again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple, TypeVar

import msgspec

from common.metrics import Metrics
from common.redis.batch import Stage
from common.redis.client import AnyPipeline
from common.redis.guarded import GuardedRedis
from common.redis.keys import ended_room_key, missing_room_key, participants_key, room_key
from common.redis.scripts import lua_script
from common.rooms.model import JSON_ENCODER, Room, RoomView

PUT_ROOM = lua_script(__package__, "lua/put_room.lua")

_VIEW_DECODER = msgspec.json.Decoder(RoomView)
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


class RoomCache:
    """Reads and writes room objects through the guarded client: nothing here raises for Redis being down."""

    def __init__(self, redis: GuardedRedis, metrics: Metrics) -> None:
        self._redis = redis
        self._metrics = metrics

    async def lookup(self, room_id: str) -> Lookup:
        """The cached room, and whether the code is known not to exist or to have ended; none of these
        while Redis is unavailable. The keys share the room's cluster slot: one MGET, or a share of
        one with the other requests' lookups of the moment."""
        view, known_missing, known_ended = await self._lookup(room_id, _VIEW_DECODER.decode)
        return Lookup(view, known_missing, known_ended)

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
        put: Sequence[Room] = (),
        end: Sequence[Room] = (),
        only_if_absent: bool = False,
        then: Stage | None = None,
    ) -> int | None:
        """Cache `put`, drop `end` (see `_queue`), then run what `then` queues: in one round trip on
        one server; on a cluster, `then` once the cache has answered (see `GuardedRedis.pipeline`).

        Returns how many of `put` were written (put_room.lua may keep a newer object in place), or
        None if Redis could not be reached or a command failed: then not all of it happened.
        """

        def cache(pipe: AnyPipeline) -> None:
            self._queue(pipe, put=put, end=end, only_if_absent=only_if_absent)

        results = await self._redis.pipeline(cache) if then is None else await self._redis.pipeline(cache, then)
        if results is None:
            # The sweep's writes (only_if_absent) are repairs that the next sweep repeats: not counted.
            if put and not only_if_absent:
                self._metrics.incr("cache_writes_skipped_total", len(put))
            return None
        per_room = 1 if only_if_absent else 2  # put_room.lua's answer (1 written, 0 kept), then the DEL
        return sum(1 for written in results[: len(put) * per_room : per_room] if written)

    @staticmethod
    def _queue(pipe: AnyPipeline, *, put: Sequence[Room], end: Sequence[Room], only_if_absent: bool) -> None:
        """Queue, in this order:

        - for each room of `put`: put_room.lua, which caches it until it expires unless a newer object
          or the ended mark is there (or, with `only_if_absent`, any object at all: what the sweep
          wants); then, unless `only_if_absent`, forget that its code was missing (probed before it
          was drawn);
        - for each room of `end`: the ended mark, then the room object and participants gone.
        """
        for room in put:
            # execute_command, not evalsha: redis-py refuses the evalsha method on a cluster pipeline,
            # though it routes the command itself by its keys (which share the room's slot).
            pipe.execute_command(
                "EVALSHA",
                PUT_ROOM.sha,
                2,
                room_key(room.room_id),
                ended_room_key(room.room_id),
                JSON_ENCODER.encode(room),
                str(room.version),
                str(_epoch_ms(room.expires_at)),
                "nx" if only_if_absent else "",
            )
            if not only_if_absent:
                pipe.delete(missing_room_key(room.room_id))
        for room in end:
            # The mark keeps any writer with an older read from caching the room again; the
            # participants go with the room object (all three keys share its cluster slot).
            until = max(_epoch_ms(room.expires_at), int(time.time() * 1000) + 1000)
            pipe.set(ended_room_key(room.room_id), b"1", pxat=until)
            pipe.delete(room_key(room.room_id), participants_key(room.room_id))


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
