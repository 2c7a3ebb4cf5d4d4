"""The room use cases the API offers, independent of HTTP: Postgres is the truth, Redis a write-through
cache and the event mailbox in front of it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import NamedTuple, NoReturn
from uuid import UUID

from msgspec import UNSET, UnsetType

from common.db import history, idempotency, rooms
from common.db.outbox import Outboxed
from common.db.pool import Connection, Pool, connection
from common.errors import (
    DatabaseUnavailable,
    InvalidCohosts,
    MetadataTooLarge,
    NotRoomHost,
    ParticipantLimitOutOfRange,
    RateLimited,
    RoomChanged,
    RoomGone,
    RoomNotFound,
)
from common.metrics import Metrics
from common.redis.counters import RateCounters
from common.redis.guarded import GuardedRedis
from common.redis.room_cache import RoomCache
from common.redis.stream import EventStream
from common.rooms.codes import generate_room_code
from common.rooms.events import RoomEvent
from common.rooms.model import (
    JSON_ENCODER,
    MAX_COHOSTS,
    DailyStats,
    Metadata,
    Room,
    RoomRole,
    RoomStatus,
    RoomView,
    StoredRoom,
    to_view,
)
from common.service.idempotency import Claim, check_replay, claim_for
from common.service.inserts import RoomInserts
from common.service.limits import CreationLimit, MissLimit
from common.service.publish import DeferredMarks, Publisher
from common.service.single_flight import SingleFlight
from common.settings import Settings
from common.tracing import current_traceparent

log = logging.getLogger(__name__)


class _Found(NamedTuple):
    """A lookup shared by concurrent requests (see `RoomService._look_up`)."""

    stored: StoredRoom | None
    asker: object  # the request that looked: its miss, if any, is counted
    refused: RateLimited | None  # that request's answer, if it was over its miss limit


class RoomService:
    """Create, validate, list, change and end rooms; read their history and daily figures.

    `marks` holds the outbox rows this process published, for the API's background loop to mark.
    `note_uncached` is told of each live room served from Postgres that Redis could not take.
    """

    def __init__(
        self,
        pool: Pool,
        redis: GuardedRedis,
        marks: DeferredMarks,
        settings: Settings,
        metrics: Metrics,
        *,
        new_code: Callable[[], str] = generate_room_code,
        note_uncached: Callable[[str], None] = lambda room_id: None,
    ) -> None:
        self._pool = pool
        self._cache = RoomCache(redis, metrics)
        self._publisher = Publisher(self._cache, EventStream.from_settings(settings))
        self._marks = marks
        counters = RateCounters(redis)
        self._miss_limit = MissLimit(counters, settings, metrics)
        self._creation_limit = CreationLimit(counters, settings, metrics)
        self._settings = settings
        self._timeout = settings.db_timeout_seconds
        self._metrics = metrics
        self._inserts = RoomInserts(pool, settings.db_timeout_seconds, metrics, new_code)
        self._note_uncached = note_uncached
        self._lookups: SingleFlight[str, _Found] = SingleFlight()

    # -- create -------------------------------------------------------------------------------

    async def create(
        self,
        host_id: UUID,
        max_participants: int | None,
        idempotency_key: str | None = None,
        metadata: Metadata | None = None,
        cohost_ids: Sequence[UUID] = (),
    ) -> tuple[Room, bool]:
        """Store a new room with its `room.created` event, then cache the room and publish the event.

        The room exists once Postgres has it, cached or not; an event Redis did not take waits in the
        outbox for the worker's relay. With an `idempotency_key` already used by this host within 24 h
        for the same request, the room it made is returned instead. Returns the room and whether it is new.
        """
        limit = self._checked_limit(max_participants, default=self._settings.default_max_participants)
        encoded = self._checked_metadata(metadata)
        cohosts = _checked_cohosts(cohost_ids, host_id)
        await self._creation_limit.check(host_id)
        claim = None if idempotency_key is None else claim_for(idempotency_key, limit, metadata, cohosts)
        made = await self._inserts.insert(
            host_id, limit, self._settings.room_ttl_seconds, claim, metadata=encoded, cohost_ids=cohosts
        )
        if made is not None:
            room, created = made
            self._metrics.incr("rooms_created_total")
            await self._publisher.publish([created], self._marks.add)
            return room, True
        if claim is None:
            raise RuntimeError("the create statement made no room and claimed no key")  # see rooms.create_rooms
        return await self._replay(host_id, claim), False  # the key is taken: answer with its room

    async def _replay(self, host_id: UUID, claim: Claim) -> Room:
        async with connection(self._pool, self._timeout) as conn:
            found = await idempotency.find_by_key(conn, host_id, claim.key)
        if found is None:  # the key expired between the two statements: vanishingly rare
            raise DatabaseUnavailable("idempotency key changed under the request; retry")
        recorded_hash, room = found
        check_replay(claim, recorded_hash)
        return room

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
            if await self._cache.write(put=[stored.room]) is None:
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

    async def daily_stats(self, first: date, last: date) -> list[DailyStats]:
        async with connection(self._pool, self._timeout) as conn:
            return await history.daily_stats(conn, first, last)

    # -- change -------------------------------------------------------------------------------

    async def update(
        self,
        room_id: str,
        caller: UUID,
        *,
        max_participants: int | None = None,
        metadata: Metadata | UnsetType | None = UNSET,
        host_id: UUID | None = None,
        cohost_ids: Sequence[UUID] | None = None,
    ) -> Room:
        """Change a live room, all in one change and one `room.updated`: its limit unless None (Signaling
        applies it from the next join) and its metadata unless UNSET (None clears it), by its host or a
        co-host; its host (a transfer) and its co-hosts unless None, by its host only."""
        limit = None if max_participants is None else self._checked_limit(max_participants, default=None)
        encoded = metadata if metadata is UNSET else self._checked_metadata(metadata)
        # Without a transfer, whether they name the host is known only to the statement, which then
        # changes nothing, and to `_explain_refusal`.
        cohosts = None if cohost_ids is None else _checked_cohosts(cohost_ids, host_id)
        if limit is None and encoded is UNSET and host_id is None and cohosts is None:
            raise ValueError("a change of a room needs something to change")  # the API refuses it first
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            changed = await rooms.update_room(
                conn,
                room_id,
                caller,
                max_participants=limit,
                metadata=encoded,
                host_id=host_id,
                cohost_ids=cohosts,
                traceparent=current_traceparent(),
            )
            if changed is None:
                host_only = host_id is not None or cohosts is not None
                await self._explain_refusal(conn, room_id, caller, host_only, cohosts)
        await self._after_commit(changed.change, changed.publish_now)
        return changed.room

    async def end(self, room_id: str, caller: UUID) -> None:
        """End a room (its host or a co-host). Ending an ended room again changes nothing."""
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            ended = await rooms.end_room(conn, room_id, caller, current_traceparent())
            stored = await rooms.get_room(conn, room_id) if ended is None else None
        if ended is not None:
            await self._after_commit(ended.change, ended.publish_now)
            return
        # No live room the caller hosts or co-hosts: one that does not exist, one that is not theirs, one
        # of theirs that has already ended (an ended room's hosts never change), or, in between, one
        # whose hosts changed since the first statement (a co-host removed and named again).
        if stored is None:
            raise RoomNotFound(f"no room {room_id}")
        if stored.room.host_id != caller and caller not in stored.room.cohost_ids:
            raise NotRoomHost("only the room's host or a co-host may end it")
        if stored.live:  # not ended: the end mark must not reach Redis
            raise RoomChanged("the room's hosts changed during the request; ask again")
        # Already ended. Say so to Redis again: the first attempt may not have reached it.
        await self._cache.write(end=[stored.room])

    async def _after_commit(self, change: Outboxed, publish_now: bool) -> None:
        """Publish a committed change; or, while an earlier event of the room still waits in the outbox,
        only apply it to the cache and leave both events to the relay, which publishes in order."""
        if publish_now:
            await self._publisher.publish([change], self._marks.add)
        else:
            await self._publisher.apply_only([change.event])

    async def _explain_refusal(
        self, conn: Connection, room_id: str, caller: UUID, host_only: bool, cohosts: tuple[UUID, ...] | None
    ) -> NoReturn:
        """Why a change found no live room that `caller` may change so (`host_only`: the host's alone;
        `cohosts`: the new co-hosts, if the change names them)."""
        access = await rooms.room_access(conn, room_id)
        if access is None:
            raise RoomNotFound(f"no room {room_id}")
        if host_only and access.host_id != caller:
            raise NotRoomHost("only the room's host may change its co-hosts or hand it to another host")
        if not access.names(caller):
            raise NotRoomHost("only the room's host or a co-host may change it")
        if not access.live:
            raise RoomGone(f"room {room_id} has ended")
        if cohosts is not None and access.host_id in cohosts:
            raise InvalidCohosts("cohostIds must not name the room's host")
        # The caller may make this change now, but could not when the change was tried: someone changed
        # the room's hosts between the two statements.
        raise RoomChanged("the room's hosts changed during the request; ask again")

    def _checked_metadata(self, metadata: Metadata | None) -> str | None:
        """The metadata as the compact JSON it is stored as, within its limit; None for none."""
        if metadata is None:
            return None
        encoded = JSON_ENCODER.encode(metadata)
        limit = self._settings.metadata_max_bytes
        if len(encoded) > limit:
            raise MetadataTooLarge(f"metadata must be at most {limit} bytes as compact JSON; it is {len(encoded)}")
        return encoded.decode()

    def _checked_limit(self, max_participants: int | None, default: int | None) -> int:
        limit = self._settings.max_participants_limit
        if max_participants is None and default is not None:
            return default
        if max_participants is None or not 2 <= max_participants <= limit:
            raise ParticipantLimitOutOfRange(f"maxParticipants must be between 2 and {limit}")
        return max_participants


def _checked_cohosts(cohost_ids: Sequence[UUID], host_id: UUID | None) -> tuple[UUID, ...]:
    """Co-hosts as the room stores them, in the order given; `InvalidCohosts` unless they are at most
    MAX_COHOSTS distinct users other than `host_id` (when known)."""
    cohosts = tuple(cohost_ids)
    if len(cohosts) > MAX_COHOSTS:
        raise InvalidCohosts(f"cohostIds must name at most {MAX_COHOSTS} users")
    if len(set(cohosts)) != len(cohosts):
        raise InvalidCohosts("cohostIds must not name a user twice")
    if host_id in cohosts:
        raise InvalidCohosts("cohostIds must not name the room's host")
    return cohosts
