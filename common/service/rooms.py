"""The room use cases the API offers, independent of HTTP: Postgres is the truth, Redis a write-through
cache and the event mailbox in front of it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import NamedTuple, NoReturn
from uuid import UUID

from msgspec import UNSET, UnsetType

from common.db import history, idempotency, rooms
from common.db.outbox import Outboxed
from common.db.pool import Connection, Pool, connection
from common.errors import (
    DatabaseUnavailable,
    MetadataTooLarge,
    NotRoomHost,
    ParticipantLimitOutOfRange,
    RateLimited,
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
from common.rooms.model import JSON_ENCODER, DailyStats, Metadata, Room, RoomStatus, RoomView, StoredRoom, to_view
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
        self._publisher = Publisher(self._cache, EventStream(settings.stream_name, settings.stream_retention_seconds))
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
    ) -> tuple[Room, bool]:
        """Store a new room with its `room.created` event, then cache the room and publish the event.

        The room exists once Postgres has it, cached or not; an event Redis did not take waits in the
        outbox for the worker's relay. With an `idempotency_key` already used by this host within 24 h
        for the same request, the room it made is returned instead. Returns the room and whether it is new.
        """
        limit = self._checked_limit(max_participants, default=self._settings.default_max_participants)
        encoded = self._checked_metadata(metadata)
        await self._creation_limit.check(host_id)
        claim = None if idempotency_key is None else claim_for(idempotency_key, limit, metadata)
        made = await self._inserts.insert(host_id, limit, self._settings.room_ttl_seconds, claim, encoded)
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

    async def host_rooms(
        self, host_id: UUID, status: RoomStatus, limit: int, before: tuple[datetime, UUID] | None
    ) -> list[StoredRoom]:
        async with connection(self._pool, self._timeout) as conn:
            return await rooms.host_rooms(conn, host_id, status, limit, before)

    async def history(self, room_id: str, client: str, reader: UUID) -> list[RoomEvent]:
        """The room's recorded lifecycle events, oldest first, for its host only: they name the host and
        every change. Recorded by the worker, so a moment behind.

        A 404 here answers "does this meeting exist" as well as `view` does: it counts as a miss.
        """
        self._miss_limit.refuse_if_blocked(client)
        async with connection(self._pool, self._timeout) as conn:
            owner = await rooms.room_owner(conn, room_id)
            if owner is not None and owner[0] == reader:
                return await history.room_history(conn, room_id)
        if owner is None:
            await self._miss_limit.count(client, None)
            raise RoomNotFound(f"no room {room_id}")
        raise NotRoomHost("only the room's host may read its history")

    async def daily_stats(self, first: date, last: date) -> list[DailyStats]:
        async with connection(self._pool, self._timeout) as conn:
            return await history.daily_stats(conn, first, last)

    # -- change -------------------------------------------------------------------------------

    async def update(
        self,
        room_id: str,
        host_id: UUID,
        *,
        max_participants: int | None = None,
        metadata: Metadata | UnsetType | None = UNSET,
    ) -> Room:
        """Change a live room (host only): its limit unless None (Signaling applies it from the next
        join), its metadata unless UNSET (None clears it); both in one change, one `room.updated`."""
        limit = None if max_participants is None else self._checked_limit(max_participants, default=None)
        encoded = metadata if metadata is UNSET else self._checked_metadata(metadata)
        if limit is None and encoded is UNSET:
            raise ValueError("a change of a room needs maxParticipants or metadata")  # the API refuses it first
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            changed = await rooms.update_room(
                conn, room_id, host_id, max_participants=limit, metadata=encoded, traceparent=current_traceparent()
            )
            if changed is None:
                await self._explain_refusal(conn, room_id, host_id)
        await self._after_commit(changed.change, changed.publish_now)
        return changed.room

    async def end(self, room_id: str, host_id: UUID) -> None:
        """End a room (host only). Ending an ended room again changes nothing."""
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            ended = await rooms.end_room(conn, room_id, host_id, current_traceparent())
            stored = await rooms.get_room(conn, room_id) if ended is None else None
        if ended is not None:
            await self._after_commit(ended.change, ended.publish_now)
            return
        # No live room of this host: rooms are never deleted and never change hosts, so this is one
        # that does not exist, another host's, or one of theirs that has already ended.
        if stored is None:
            raise RoomNotFound(f"no room {room_id}")
        if stored.room.host_id != host_id:
            raise NotRoomHost("only the room's host may end it")
        # Already ended. Say so to Redis again: the first attempt may not have reached it.
        await self._cache.write(end=[stored.room])

    async def _after_commit(self, change: Outboxed, publish_now: bool) -> None:
        """Publish a committed change; or, while an earlier event of the room still waits in the outbox,
        only apply it to the cache and leave both events to the relay, which publishes in order."""
        if publish_now:
            await self._publisher.publish([change], self._marks.add)
        else:
            await self._publisher.apply_only([change.event])

    async def _explain_refusal(self, conn: Connection, room_id: str, host_id: UUID) -> NoReturn:
        """Why a change of a live room of this host found none."""
        owner = await rooms.room_owner(conn, room_id)
        if owner is None:
            raise RoomNotFound(f"no room {room_id}")
        if owner[0] != host_id:
            raise NotRoomHost("only the room's host may change it")
        raise RoomGone(f"room {room_id} has ended")

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
