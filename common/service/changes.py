"""The room use cases that write: create, change and end rooms. Postgres decides and stores each write
with its outbox event; Redis then gets the room and the event (see common/service/publish.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from msgspec import UNSET, UnsetType

from common.db import changes, idempotency, removals
from common.db.changes import Changed, Refusal, Refused, RoomChange
from common.db.pool import Pool, connection
from common.errors import (
    DatabaseUnavailable,
    InvalidCohosts,
    InvalidSchedule,
    NotRoomHost,
    RoomError,
    RoomGone,
    RoomNotFound,
    RoomStarted,
    TooManyRemoved,
)
from common.metrics import Metrics
from common.redis.counters import RateCounters
from common.redis.guarded import GuardedRedis
from common.redis.room_cache import RoomCache
from common.redis.stream import EventStream
from common.rooms.codes import generate_room_code
from common.rooms.model import MAX_REMOVED, Metadata, Room
from common.service.checks import (
    DEFAULT_TIMEOUTS,
    UNSCHEDULED,
    Schedule,
    Timeouts,
    checked_cohosts,
    checked_limit,
    checked_metadata,
    checked_schedule,
    schedule_bounds,
    schedule_refusal,
    timeouts_of_new_room,
)
from common.service.idempotency import Claim, check_replay, claim_for
from common.service.inserts import RoomInserts
from common.service.limits import ChangeLimit, CreationLimit
from common.service.publish import DeferredMarks, Publisher
from common.settings import Settings
from common.tracing import current_traceparent


class RoomChanges:
    """Create, change and end rooms.

    `marks` holds the outbox rows this process published, for the API's background loop to mark.
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
    ) -> None:
        self._pool = pool
        self._cache = RoomCache(redis, metrics, settings.early_join_seconds)
        self._publisher = Publisher(self._cache, EventStream.from_settings(settings))
        self._marks = marks
        counters = RateCounters(redis)
        self._creation_limit = CreationLimit(counters, settings, metrics)
        self._change_limit = ChangeLimit(counters, settings, metrics)
        self._settings = settings
        self._timeout = settings.db_timeout_seconds
        self._metrics = metrics
        self._inserts = RoomInserts(pool, settings.db_timeout_seconds, metrics, new_code)

    async def create(
        self,
        host_id: UUID,
        max_participants: int | None,
        idempotency_key: str | None = None,
        *,
        metadata: Metadata | None = None,
        cohost_ids: Sequence[UUID] = (),
        schedule: Schedule = UNSCHEDULED,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> tuple[Room, bool]:
        """Store a new room with its `room.created` event, then cache the room and publish the event.
        It opens at `schedule.starts_at` (else at once) and ends at `schedule.expires_at` (else
        ROOMS_ROOM_TTL_SECONDS after its start), or sooner when empty or unused for its `timeouts`
        (else the deployment's).

        The room exists once Postgres has it, cached or not; an event Redis did not take waits in the
        outbox for the worker's relay. With an `idempotency_key` already used by this host within 24 h
        for the same request, the room it made is returned instead. Returns the room and whether it is new.
        """
        settings = self._settings
        limit = (
            settings.default_max_participants if max_participants is None else checked_limit(settings, max_participants)
        )
        encoded = checked_metadata(settings, metadata)
        cohosts = checked_cohosts(cohost_ids, host_id)
        claim = (
            None
            if idempotency_key is None
            else claim_for(
                idempotency_key, limit, metadata=metadata, cohost_ids=cohosts, schedule=schedule, timeouts=timeouts
            )
        )
        try:
            checked_schedule(settings, schedule)
        except InvalidSchedule:
            # A retry of a create that was within bounds when it was first asked (a start of "now",
            # retried a minute on) answers with the room it made, as any retry does.
            if claim is not None and (made_before := await self._made_before(host_id, claim)) is not None:
                return made_before, False
            raise
        await self._creation_limit.check(host_id)
        made = await self._inserts.insert(
            host_id,
            limit,
            settings.room_ttl_seconds,
            claim,
            metadata=encoded,
            cohost_ids=cohosts,
            schedule=schedule,
            timeouts=timeouts_of_new_room(settings, timeouts),
        )
        if made is not None:
            room, created = made
            self._metrics.incr("rooms_created_total")
            await self._publisher.publish([created], self._marks.add)
            return room, True
        if claim is None:
            raise RuntimeError("the create statement made no room and claimed no key")  # see rooms.create_rooms
        return await self._replay(host_id, claim), False  # the key is taken: answer with its room

    async def _made_before(self, host_id: UUID, claim: Claim) -> Room | None:
        """The room a live Idempotency-Key made for this very request, if any."""
        async with connection(self._pool, self._timeout) as conn:
            found = await idempotency.find_by_key(conn, host_id, claim.key)
        return None if found is None or found[0] != claim.request_hash else found[1]

    async def _replay(self, host_id: UUID, claim: Claim) -> Room:
        async with connection(self._pool, self._timeout) as conn:
            found = await idempotency.find_by_key(conn, host_id, claim.key)
        if found is None:  # the key expired between the two statements: vanishingly rare
            raise DatabaseUnavailable("idempotency key changed under the request; retry")
        recorded_hash, room = found
        check_replay(claim, recorded_hash)
        return room

    async def update(
        self,
        room_id: str,
        caller: UUID,
        *,
        max_participants: int | None = None,
        metadata: Metadata | UnsetType | None = UNSET,
        host_id: UUID | None = None,
        cohost_ids: Sequence[UUID] | None = None,
        schedule: Schedule = UNSCHEDULED,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> Room:
        """Change a live room, all in one change and one `room.updated`: its limit unless None (Signaling
        applies it from the next join), its metadata unless UNSET (None clears it), its end and, while it
        is scheduled, its start, and each of its timeouts, unless None, by its host or a co-host; its host
        (a transfer) and its co-hosts unless None, by its host only. A change to what the room already is
        writes nothing and answers the room as it is."""
        settings = self._settings
        change = RoomChange(
            max_participants=None if max_participants is None else checked_limit(settings, max_participants),
            metadata=metadata if metadata is UNSET else checked_metadata(settings, metadata),
            host_id=host_id,
            cohost_ids=None if cohost_ids is None else checked_cohosts(cohost_ids, host_id),
            # The statement holds them to their bounds, against the room's other moment and its clock.
            starts_at=schedule.starts_at,
            expires_at=schedule.expires_at,
            empty_timeout_seconds=timeouts.empty_seconds,
            unused_timeout_seconds=timeouts.unused_seconds,
        )
        if change == RoomChange():
            raise ValueError("a change of a room needs something to change")  # the API refuses it first
        await self._change_limit.check(caller)
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            outcome = await changes.update_room(
                conn,
                room_id,
                caller,
                change,
                bounds=schedule_bounds(settings),
                traceparent=current_traceparent(),
            )
        if isinstance(outcome, Changed):
            await self._after_commit(outcome)
            return outcome.room
        if outcome.reason is Refusal.NOTHING_TO_CHANGE and outcome.room is not None:
            return outcome.room
        raise _refusal_error(outcome, room_id, "change", self._settings)

    async def end(self, room_id: str, caller: UUID) -> None:
        """End a room (its host or a co-host). Ending an ended room again changes nothing."""
        await self._change_limit.check(caller)
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            outcome = await changes.end_room(conn, room_id, caller, current_traceparent())
        if isinstance(outcome, Changed):
            self._metrics.rooms_ended("deleted")
            await self._after_commit(outcome)
        elif outcome.reason is Refusal.ENDED and outcome.room is not None:
            # Already ended. Say so to Redis again: the first attempt may not have reached it.
            await self._cache.write(end=[outcome.room])
        else:
            raise _refusal_error(outcome, room_id, "end", self._settings)

    async def remove_participant(self, room_id: str, caller: UUID, participant_id: str) -> None:
        """Bar a participant from a live room (its host or a co-host; nobody the host), until it ends:
        out of the participant set at once, refused by join.lua and by tickets from then on, with a
        `participant.removed` event. Barring someone barred already changes nothing."""
        await self._change_limit.check(caller)
        await self._marks.flush()  # so this room's earlier events count as published, as they are
        async with connection(self._pool, self._timeout) as conn:
            outcome = await removals.remove_participant(conn, room_id, caller, participant_id, current_traceparent())
        if isinstance(outcome, Changed):
            await self._after_commit(outcome)
        elif outcome.reason is not Refusal.NOTHING_TO_CHANGE:
            raise _refusal_error(outcome, room_id, "remove participants of", self._settings)

    async def _after_commit(self, changed: Changed) -> None:
        """Publish a committed change; or, while an earlier event of the room still waits in the outbox,
        only apply it to the cache and leave both events to the relay, which publishes in order."""
        if changed.publish_now:
            await self._publisher.publish([changed.change], self._marks.add)
        else:
            await self._publisher.apply_only([changed.change])


def _refusal_error(refused: Refused, room_id: str, action: str, settings: Settings) -> RoomError:  # noqa: PLR0911 (a case per refusal)
    """The error that answers a change or an end its statement refused."""
    match refused.reason:
        case Refusal.NOT_FOUND:
            return RoomNotFound(f"no room {room_id}")
        case Refusal.HOST_ONLY:
            return NotRoomHost("only the room's host may change its co-hosts or hand it to another host")
        case Refusal.NOT_ALLOWED:
            return NotRoomHost(f"only the room's host or a co-host may {action} it")
        case Refusal.ENDED:
            return RoomGone(f"room {room_id} has ended")
        case Refusal.COHOSTS_NAME_HOST:
            return InvalidCohosts("cohostIds must not name the room's host")
        case Refusal.HOST_NOT_REMOVABLE:
            return NotRoomHost("the room's host cannot be removed from it")
        case Refusal.TOO_MANY_REMOVED:
            return TooManyRemoved(f"room {room_id} bars {MAX_REMOVED} participants already, the most it may")
        case Refusal.ROOM_STARTED:
            return RoomStarted(f"room {room_id} has started: startsAt can no longer change")
        case (
            Refusal.START_IN_PAST
            | Refusal.START_TOO_FAR
            | Refusal.END_TOO_SOON
            | Refusal.ENDS_BEFORE_START
            | Refusal.TOO_LONG
        ):
            return schedule_refusal(refused.reason, settings)
        case Refusal.NOTHING_TO_CHANGE:
            raise RuntimeError("a change with nothing to change found no room")  # the statement shows it
