"""Room operations: Postgres is the truth, Redis a write-through cache and the event mailbox in front of it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Literal
from uuid import UUID

import asyncpg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from common import queries
from common.cache import RoomCache
from common.database import Connection, Pool, connection
from common.events import RoomEvent
from common.jobs import request_restore
from common.metrics import Metrics
from common.room_codes import generate_room_code
from common.rooms import (
    DatabaseUnavailable,
    Room,
    RoomError,
    RoomGone,
    RoomNotFound,
    RoomView,
    StoredRoom,
    to_view,
)
from common.settings import Settings

log = logging.getLogger(__name__)

RoomStatus = Literal["active", "ended", "all"]

# With 26^10 codes a collision is already rare; five in a row means something else is wrong.
_CODE_ATTEMPTS = 5
# Rooms served from Postgres while Redis was away, remembered so the worker can restore them once it
# is back. Bounded: past this many, the worker's periodic sweep restores the rest.
_MAX_RESTORE_REQUESTS = 10_000
# Published outbox rows waiting to be marked while Postgres is away; past this, the relay repeats them.
_MAX_PENDING_MARKS = 100_000
# Clients remembered as over the miss limit; past this many, expired entries are dropped.
_MAX_BLOCKED_CLIENTS = 100_000


class ParticipantLimitOutOfRange(RoomError):
    pass


class NoFreeRoomCode(RoomError):
    """Every code drawn was taken: with 26^10 codes, a sign of a broken generator, not bad luck."""


class NotRoomHost(RoomError):
    """Only the host may change or end a room."""


class IdempotencyKeyReused(RoomError):
    """An Idempotency-Key came back with a different request."""


class RateLimited(RoomError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
        # Outbox rows whose events are on the stream, marked in batches by `mark_published_events`.
        self._published: list[int] = []
        # Clients over the miss limit, and until when (epoch seconds).
        self._blocked: dict[str, float] = {}

    # -- create -------------------------------------------------------------------------------

    async def create(
        self, host_id: UUID, max_participants: int | None, idempotency_key: str | None = None
    ) -> tuple[Room, bool]:
        """Store a new room with its `room.created` event, then cache the room and publish the event.

        The room exists once Postgres has it, cached or not; an event Redis did not take waits in the
        outbox for the worker's relay. With an `idempotency_key` already used by this host within 24 h
        for the same request, the room it made is returned instead. Returns the room and whether it is new.
        """
        max_participants = self._checked_limit(max_participants, default=self._settings.default_max_participants)
        await self._check_creation_rate(host_id)
        key = None
        if idempotency_key is not None:
            # What the request asked for, after defaults: an omitted limit and the default are the same.
            key = (idempotency_key, hashlib.sha256(f"maxParticipants={max_participants}".encode()).hexdigest())
        made = await self._insert_with_fresh_code(host_id, max_participants, key)
        if made is None:
            assert key is not None  # only a taken key makes no room
            return await self._replay(host_id, *key), False
        room, created = made
        self._metrics.incr("rooms_created_total")
        await self._after_commit(created, put=[room])
        return room, True

    async def _replay(self, host_id: UUID, key: str, request_hash: str) -> Room:
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            found = await queries.find_by_key(conn, host_id, key)
        if found is None:  # the key expired between the two statements: vanishingly rare
            raise DatabaseUnavailable("idempotency key changed under the request; retry")
        recorded_hash, room = found
        if recorded_hash != request_hash:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        return room

    async def _insert_with_fresh_code(
        self, host_id: UUID, max_participants: int, key: tuple[str, str] | None
    ) -> tuple[Room, queries.Outboxed] | None:
        ttl = self._settings.room_ttl_seconds
        for _ in range(_CODE_ATTEMPTS):
            code = self._new_code()
            try:
                async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
                    return await queries.create_room(conn, code, host_id, max_participants, ttl, idempotency=key)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "meetings_room_id_key":
                    raise
                self._metrics.incr("room_code_collisions_total")
                log.warning("room code %s was taken; drawing another", code)
        raise NoFreeRoomCode(f"no free room code after {_CODE_ATTEMPTS} attempts")

    # -- read ---------------------------------------------------------------------------------

    async def view(self, room_id: str, client: str) -> RoomView:
        """The live room with this (canonical) code: from Redis, else from Postgres, re-caching it.

        `client` (who asks) is limited in how many unknown or ended codes it may try a minute.
        """
        self._refuse_if_blocked(client)
        lookup = await self._cache.lookup(room_id)
        if lookup.view is not None:
            return lookup.view
        if lookup.known_missing:
            await self._count_miss(client, None)
            raise RoomNotFound(f"no room {room_id}")
        if lookup.known_ended:
            await self._count_miss(client, None)
            raise RoomGone(f"room {room_id} has ended")
        self._metrics.incr("database_lookups_total")
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            stored = await queries.get_room(conn, room_id)
        if stored is None:
            await self._count_miss(client, room_id)
            raise RoomNotFound(f"no room {room_id}")
        if not stored.live:
            await self._count_miss(client, None)
            raise RoomGone(f"room {room_id} has ended")
        if not await self._cache.put(stored.room) and len(self._restore_requests) < _MAX_RESTORE_REQUESTS:
            self._restore_requests.add(room_id)
        return to_view(stored.room)

    async def host_rooms(
        self, host_id: UUID, status: RoomStatus, limit: int, before: tuple[datetime, UUID] | None
    ) -> list[StoredRoom]:
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            return await queries.host_rooms(conn, host_id, status, limit, before)

    async def history(self, room_id: str, client: str) -> list[RoomEvent]:
        """The room's recorded lifecycle events, oldest first. Recorded by the worker, so a moment behind.

        A 404 here answers "does this meeting exist" as well as `view` does: it counts as a miss.
        """
        self._refuse_if_blocked(client)
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            events = await queries.room_history(conn, room_id)
            exists = bool(events) or await queries.room_exists(conn, room_id)
        if not exists:
            await self._count_miss(client, None)
            raise RoomNotFound(f"no room {room_id}")
        return events

    async def daily_stats(self, first: date, last: date) -> list[queries.DailyStats]:
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            return await queries.daily_stats(conn, first, last)

    # -- change -------------------------------------------------------------------------------

    async def set_max_participants(self, room_id: str, host_id: UUID, max_participants: int) -> Room:
        """Change a live room's limit (host only); Signaling applies it from the next join."""
        max_participants = self._checked_limit(max_participants, default=None)
        await self.flush_published()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            changed = await queries.update_max_participants(conn, room_id, host_id, max_participants)
            if changed is None:
                await self._explain_refusal(conn, room_id, host_id)
        assert changed is not None  # _explain_refusal raised otherwise
        room, updated, publish_now = changed
        await self._after_commit(updated, put=[room], publish=publish_now)
        return room

    async def end(self, room_id: str, host_id: UUID) -> None:
        """End a room (host only). Ending an ended room again changes nothing."""
        await self.flush_published()  # so this room's earlier events count as published, as they are
        stored: StoredRoom | None = None
        async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
            ended = await queries.end_room(conn, room_id, host_id)
            if ended is None:
                owner = await queries.room_owner(conn, room_id)
                if owner is None:
                    raise RoomNotFound(f"no room {room_id}")
                if owner[0] != host_id:
                    raise NotRoomHost("only the room's host may end it")
                stored = await queries.get_room(conn, room_id)
        if ended is None:
            # Already ended. Say so to Redis again: the first attempt may not have reached it.
            if stored is not None:
                await self._cache.write(end=[stored.room])
            return
        event, publish_now = ended
        await self._after_commit(event, end=[event.event.data], publish=publish_now)

    async def _explain_refusal(self, conn: Connection, room_id: str, host_id: UUID) -> None:
        owner = await queries.room_owner(conn, room_id)
        if owner is None:
            raise RoomNotFound(f"no room {room_id}")
        if owner[0] != host_id:
            raise NotRoomHost("only the room's host may change it")
        raise RoomGone(f"room {room_id} has ended")

    # The miss limit. Counters live in Redis, shared by every API process; each process also remembers
    # the clients it has seen go over, so that a hit costs no extra Redis read. A client over the limit
    # is refused by a process from the first miss that process sees of it.

    def _refuse_if_blocked(self, client: str) -> None:
        until = self._blocked.get(client)
        if until is None:
            return
        left = until - time.time()
        if left <= 0:
            del self._blocked[client]
            return
        self._refuse_misses(int(left) + 1)

    async def _count_miss(self, client: str, unknown_room_id: str | None) -> None:
        counted = await self._cache.record_miss(client, unknown_room_id, self._settings.negative_cache_seconds)
        limit = self._settings.miss_limit_per_minute
        if counted is None or not limit or counted[0] <= limit:
            return
        retry_after = counted[1]
        if len(self._blocked) >= _MAX_BLOCKED_CLIENTS:
            now = time.time()
            self._blocked = {c: until for c, until in self._blocked.items() if until > now}
        self._blocked[client] = time.time() + retry_after
        self._refuse_misses(retry_after)

    def _refuse_misses(self, retry_after: int) -> None:
        self._metrics.incr("rate_limited_total")
        raise RateLimited(f"too many unknown or ended rooms asked for; retry in {retry_after} s", retry_after)

    async def _check_creation_rate(self, host_id: UUID) -> None:
        limit = self._settings.create_limit_per_minute
        if not limit:
            return
        counted = await self._cache.count_creation(str(host_id))
        if counted is not None and counted[0] > limit:
            self._metrics.incr("rate_limited_total")
            raise RateLimited(f"at most {limit} rooms a minute; retry in {counted[1]} s", counted[1])

    def _checked_limit(self, max_participants: int | None, default: int | None) -> int:
        limit = self._settings.max_participants_limit
        if max_participants is None and default is not None:
            return default
        if max_participants is None or not 2 <= max_participants <= limit:
            raise ParticipantLimitOutOfRange(f"maxParticipants must be between 2 and {limit}")
        return max_participants

    # -- after commit: Redis ------------------------------------------------------------------

    async def _after_commit(
        self,
        change: queries.Outboxed,
        put: list[Room] | None = None,
        end: list[Room] | None = None,
        publish: bool = True,
    ) -> None:
        """Bring Redis in line with a committed change, then publish its event and mark it published.

        `publish` is False when an earlier event of the room still waits in the outbox: the relay then
        publishes both, in order.
        """
        events = [change.event] if publish else []
        if await self._cache.write(put=put or (), end=end or (), publish=events) and publish:
            self._published.append(change.outbox_id)

    async def mark_published_events(self, interval: float) -> None:
        """Runs for the life of the app: marks published outbox rows, many per statement.

        Marking is bookkeeping, not part of the answer: one UPDATE per request would cost every create
        a second Postgres round trip. The relay leaves rows younger than `relay_grace_seconds` alone,
        so a row marked a moment late is not published twice; one never marked (the process died, or
        Postgres was down for long) is published again by the relay, and consumers drop the copy.
        """
        while True:
            await asyncio.sleep(interval)
            await self.flush_published()

    async def flush_published(self) -> None:
        """Never raises: a batch that could not be marked is kept (bounded) for the next round."""
        if not self._published:
            return
        batch, self._published = self._published, []
        marked = False
        try:
            async with connection(self._pool, self._settings.db_timeout_seconds) as conn:
                await queries.mark_published(conn, batch)
            marked = True
        except DatabaseUnavailable as exc:
            log.warning("could not mark %d events published yet: %s", len(batch), exc)
        except Exception:  # a background task must outlive any one failure
            log.exception("could not mark %d events published", len(batch))
        finally:
            if not marked:  # failed or cancelled: keep them for the next round (or the final flush)
                # Past the bound, the relay publishes the rest again and consumers drop the copies.
                self._published = (batch + self._published)[-_MAX_PENDING_MARKS:]

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
                except Exception:  # a background task must outlive any one failure
                    log.exception("could not ask for room %s to be restored", room_id)
                self._restore_requests.discard(room_id)
