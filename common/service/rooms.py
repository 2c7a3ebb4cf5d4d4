"""The room use cases that read, independent of HTTP: Postgres is the truth, Redis a write-through
cache in front of it. The writes are common/service/changes.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import NamedTuple
from uuid import UUID

from common.db import history, rooms, session_pages
from common.db.pool import Pool, connection
from common.errors import (
    NotRoomHost,
    RateLimited,
    RoomGone,
    RoomNotFound,
)
from common.metrics import Metrics
from common.redis.counters import RateCounters
from common.redis.guarded import GuardedRedis
from common.redis.room_cache import RoomCache
from common.rooms.events import RoomEvent
from common.rooms.model import (
    DailyStats,
    RoomRole,
    RoomStatus,
    RoomView,
    StoredRoom,
    to_view,
)
from common.rooms.sessions import RecordedSession
from common.service.limits import MissLimit
from common.service.single_flight import SingleFlight
from common.settings import Settings

log = logging.getLogger(__name__)


class _Found(NamedTuple):
    """A lookup shared by concurrent requests (see `RoomService._look_up`)."""

    stored: StoredRoom | None
    asker: object  # the request that looked: its miss, if any, is counted
    refused: RateLimited | None  # that request's answer, if it was over its miss limit


class RoomService:
    """Validate and list rooms; read their history, sessions and daily figures. (Writes: common/service/changes.py.)

    `note_uncached` is told of each live room served from Postgres that Redis could not take.
    """

    def __init__(
        self,
        pool: Pool,
        redis: GuardedRedis,
        settings: Settings,
        metrics: Metrics,
        *,
        note_uncached: Callable[[str], None] = lambda room_id: None,
    ) -> None:
        self._pool = pool
        self._cache = RoomCache(redis, metrics, settings.early_join_seconds)
        self._miss_limit = MissLimit(RateCounters(redis), settings, metrics)
        self._timeout = settings.db_timeout_seconds
        self._metrics = metrics
        self._note_uncached = note_uncached
        self._lookups: SingleFlight[str, _Found] = SingleFlight()

    # -- read ---------------------------------------------------------------------------------

    async def view(self, room_id: str, who: Callable[[], str]) -> RoomView:
        """The live room with this (canonical) code: from Redis, else from Postgres, re-caching it.

        `who()` tells who asks: each client may try only so many unknown or ended codes a minute.
        It is called only when needed (a miss, or some client over the limit): reading who asks from
        a request's headers would cost a cached GET a tenth of its time.
        """
        if self._miss_limit.blocks_anyone:
            self._miss_limit.refuse_if_blocked(who())
        lookup = await self._cache.lookup(room_id)
        if lookup.view is not None:
            return lookup.view
        client = who()
        if lookup.known_missing:
            await self._miss_limit.count(client, None)
            raise RoomNotFound(f"no room {room_id}")
        if lookup.known_ended:
            await self._miss_limit.count(client, None)
            raise RoomGone(f"room {room_id} has ended")
        # Concurrent misses of one code (a stampede on a key Redis lacks) make one Postgres lookup.
        asker = object()
        found = await self._lookups.run(room_id, lambda: self._look_up(room_id, client, asker))
        stored = found.stored
        if stored is not None and stored.live:
            return to_view(stored.room)
        if found.asker is not asker:
            await self._miss_limit.count(client, None)  # the asker remembered an unknown code already
        elif found.refused is not None:
            raise found.refused
        if stored is None:
            raise RoomNotFound(f"no room {room_id}")
        raise RoomGone(f"room {room_id} has ended")

    async def _look_up(self, room_id: str, client: str, asker: object) -> _Found:
        """The room from Postgres, once for all who ask at the same time, and what Redis should know
        before they are answered, so that nobody asking a moment later reaches Postgres either: a
        live room is cached again, an ended one is marked ended again (Redis had lost the mark), and
        an unknown code is remembered as missing by counting the asker's miss."""
        self._metrics.incr("database_lookups_total")
        async with connection(self._pool, self._timeout) as conn:
            stored = await rooms.get_room(conn, room_id)
        if stored is not None and stored.live:
            if await self._cache.write(put=[stored.cached]) is None:
                self._note_uncached(room_id)
            return _Found(stored, asker, refused=None)
        if stored is not None:
            await self._cache.write(end=[stored.room])
        try:
            await self._miss_limit.count(client, room_id if stored is None else None)
        except RateLimited as refused:  # the asker's alone: the others are counted on their own
            return _Found(stored, asker, refused)
        return _Found(stored, asker, refused=None)

    async def user_rooms(
        self, user_id: UUID, role: RoomRole, status: RoomStatus, limit: int, before: tuple[datetime, UUID] | None
    ) -> list[StoredRoom]:
        async with connection(self._pool, self._timeout) as conn:
            return await rooms.user_rooms(conn, user_id, role=role, status=status, limit=limit, before=before)

    async def history(
        self, room_id: str, client: str, reader: UUID, *, limit: int, after: tuple[datetime, int] | None = None
    ) -> list[RoomEvent]:
        """Up to `limit` of the room's recorded lifecycle events, oldest first, after the position `after`
        (occurred_at, version), for its host and co-hosts only: they name the host and every change.
        Recorded by the worker, so a moment behind.

        A 404 here answers "does this meeting exist" as well as `view` does: it counts as a miss.
        """
        self._miss_limit.refuse_if_blocked(client)
        async with connection(self._pool, self._timeout) as conn:
            access = await rooms.room_access(conn, room_id)
            if access is not None and access.names(reader):
                return await history.room_history(conn, room_id, limit=limit, after=after)
        if access is None:
            await self._miss_limit.count(client, None)
            raise RoomNotFound(f"no room {room_id}")
        raise NotRoomHost("only the room's host and co-hosts may read its history")

    async def sessions(
        self, room_id: str, client: str, reader: UUID, *, limit: int, before: datetime | None = None
    ) -> list[RecordedSession]:
        """Up to `limit` of the room's recorded sessions, newest first, started before `before`, for its
        host and co-hosts only, as for its history (live or ended alike). Recorded by the worker's
        presence pass: a session in progress is as of its last pass. A 404 counts as a miss, as there."""
        self._miss_limit.refuse_if_blocked(client)
        async with connection(self._pool, self._timeout) as conn:
            access = await rooms.room_access(conn, room_id)
            if access is not None and access.names(reader):
                return await session_pages.room_sessions(conn, room_id, limit=limit, before=before)
        if access is None:
            await self._miss_limit.count(client, None)
            raise RoomNotFound(f"no room {room_id}")
        raise NotRoomHost("only the room's host and co-hosts may read its sessions")

    async def daily_stats(self, first: date, last: date) -> list[DailyStats]:
        async with connection(self._pool, self._timeout) as conn:
            return await history.daily_stats(conn, first, last)
