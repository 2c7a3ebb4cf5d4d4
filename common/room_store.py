"""Creating and validating rooms: Postgres is the truth, Redis a write-through cache in front of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date
from uuid import UUID

import asyncpg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from common import queries
from common.cache import RoomCache
from common.database import Pool, connection
from common.events import RoomEvent
from common.jobs import request_restore
from common.metrics import Metrics
from common.room_codes import generate_room_code
from common.rooms import DatabaseUnavailable, Room, RoomError, RoomGone, RoomNotFound, RoomView, to_view
from common.settings import Settings

log = logging.getLogger(__name__)

# With 26^10 codes a collision is already rare; five in a row means something else is wrong.
_CODE_ATTEMPTS = 5
# Rooms served from Postgres while Redis was away, remembered so the worker can restore them once it
# is back. Bounded: past this many, the worker's periodic sweep restores the rest.
_MAX_RESTORE_REQUESTS = 10_000


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
        self._restore_requests: set[str] = set()

    async def create(self, host_id: UUID, max_participants: int | None) -> Room:
        """Store a new room with its `room.created` event, then cache the room and publish the event.

        The room exists once Postgres has it, cached or not; an event Redis did not take waits in the
        outbox for the worker's relay.
        """
        limit = self._settings.max_participants_limit
        if max_participants is None:
            max_participants = self._settings.default_max_participants
        elif not 2 <= max_participants <= limit:
            raise ParticipantLimitOutOfRange(f"maxParticipants must be between 2 and {limit}")

        room, created = await self._insert_with_fresh_code(host_id, max_participants)
        self._metrics.incr("rooms_created_total")
        if await self._cache.write(put=[room], publish=[created.event]):
            await self._mark_published(created.outbox_id)
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
        if not await self._cache.put(stored.room) and len(self._restore_requests) < _MAX_RESTORE_REQUESTS:
            self._restore_requests.add(room_id)
        return to_view(stored.room)

    async def history(self, room_id: str) -> list[RoomEvent]:
        """The room's recorded lifecycle events, oldest first. Recorded by the worker, so a moment behind."""
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            events = await queries.room_history(conn, room_id)
            if not events and not await queries.room_exists(conn, room_id):
                raise RoomNotFound(f"no room {room_id}")
        return events

    async def daily_stats(self, first: date, last: date) -> list[queries.DailyStats]:
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            return await queries.daily_stats(conn, first, last)

    async def forward_restore_requests(self, queue: ArqRedis, interval: float) -> None:
        """Runs for the life of the app: once Redis is back, ask the worker to restore what was missed."""
        while True:
            await asyncio.sleep(interval)
            if not self._restore_requests or not self._cache.available:
                continue
            for room_id in list(self._restore_requests):
                try:
                    async with asyncio.timeout(self._settings.redis_timeout_seconds):
                        await request_restore(queue, room_id)
                except (RedisError, OSError, TimeoutError):
                    break  # Redis went away again; keep the rest for the next round
                self._restore_requests.discard(room_id)

    async def _mark_published(self, outbox_id: int) -> None:
        """Best effort: if this fails the relay publishes the event again, and consumers drop the copy."""
        try:
            async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
                await queries.mark_published(conn, [outbox_id])
        except DatabaseUnavailable:
            log.warning("could not mark event %s published; the relay will publish it again", outbox_id)

    async def _insert_with_fresh_code(self, host_id: UUID, max_participants: int) -> tuple[Room, queries.Outboxed]:
        ttl = self._settings.room_ttl_seconds
        for _ in range(_CODE_ATTEMPTS):
            code = self._new_code()
            try:
                async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
                    return await queries.create_room(conn, code, host_id, max_participants, ttl)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "meetings_room_id_key":
                    raise
                self._metrics.incr("room_code_collisions_total")
                log.warning("room code %s was taken; drawing another", code)
        raise NoFreeRoomCode(f"no free room code after {_CODE_ATTEMPTS} attempts")
