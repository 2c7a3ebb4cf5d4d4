"""Creating and validating rooms: Postgres is the truth, Redis a write-through cache in front of it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

import asyncpg

from common import queries
from common.cache import RoomCache
from common.database import Pool, connection
from common.metrics import Metrics
from common.room_codes import generate_room_code
from common.rooms import Room, RoomError, RoomGone, RoomNotFound, RoomView, to_view
from common.settings import Settings

log = logging.getLogger(__name__)

# With 26^10 codes a collision is already rare; five in a row means something else is wrong.
_CODE_ATTEMPTS = 5


class ParticipantLimitOutOfRange(RoomError):
    pass


class NoFreeRoomCode(RoomError):
    """Every code drawn was taken: with 26^10 codes, a sign of a broken generator, not bad luck."""


class RoomStore:
    """The room operations the API offers, independent of HTTP."""

    def __init__(
        self,
        pool: Pool,
        cache: RoomCache,
        settings: Settings,
        metrics: Metrics,
        new_code: Callable[[], str] = generate_room_code,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._settings = settings
        self._metrics = metrics
        self._new_code = new_code

    async def create(self, host_id: UUID, max_participants: int | None) -> Room:
        """Store a new room, then cache it. The room exists once Postgres has it, cached or not."""
        limit = self._settings.max_participants_limit
        if max_participants is None:
            max_participants = self._settings.default_max_participants
        elif not 2 <= max_participants <= limit:
            raise ParticipantLimitOutOfRange(f"maxParticipants must be between 2 and {limit}")

        room = await self._insert_with_fresh_code(host_id, max_participants)
        self._metrics.incr("rooms_created_total")
        await self._cache.put(room)
        return room

    async def view(self, room_id: str) -> RoomView:
        """The live room with this (canonical) code: from Redis, else from Postgres, re-caching it."""
        cached = await self._cache.get_view(room_id)
        if cached is not None:
            return cached
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            stored = await queries.get_room(conn, room_id)
        if stored is None:
            raise RoomNotFound(f"no room {room_id}")
        if not stored.live:
            raise RoomGone(f"room {room_id} has ended")
        await self._cache.put(stored.room)
        return to_view(stored.room)

    async def _insert_with_fresh_code(self, host_id: UUID, max_participants: int) -> Room:
        ttl = self._settings.room_ttl_seconds
        for _ in range(_CODE_ATTEMPTS):
            code = self._new_code()
            try:
                async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
                    return await queries.insert_room(conn, code, host_id, max_participants, ttl)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "meetings_room_id_key":
                    raise
                self._metrics.incr("room_code_collisions_total")
                log.warning("room code %s was taken; drawing another", code)
        raise NoFreeRoomCode(f"no free room code after {_CODE_ATTEMPTS} attempts")
