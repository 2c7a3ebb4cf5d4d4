"""What a room's options must be before anything is stored: the participant limit, the metadata's size,
the co-hosts, the start and the end; and what a create takes for the options it was not given. Each check
answers the value as it is stored, or raises the error the API answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from common.db.changes import ScheduleBounds
from common.errors import InvalidCohosts, InvalidSchedule, MetadataTooLarge, ParticipantLimitOutOfRange
from common.rooms.model import JSON_ENCODER, MAX_COHOSTS, Metadata
from common.settings import Settings


def checked_limit(settings: Settings, max_participants: int) -> int:
    """`ParticipantLimitOutOfRange` unless 2 <= `max_participants` <= ROOMS_MAX_PARTICIPANTS_LIMIT."""
    limit = settings.max_participants_limit
    if not 2 <= max_participants <= limit:
        raise ParticipantLimitOutOfRange(f"maxParticipants must be between 2 and {limit}")
    return max_participants


def checked_metadata(settings: Settings, metadata: Metadata | None) -> str | None:
    """The metadata as the compact JSON it is stored as, within its limit; None for none."""
    if metadata is None:
        return None
    encoded = JSON_ENCODER.encode(metadata)
    limit = settings.metadata_max_bytes
    if len(encoded) > limit:
        raise MetadataTooLarge(f"metadata must be at most {limit} bytes as compact JSON; it is {len(encoded)}")
    return encoded.decode()


def checked_cohosts(cohost_ids: Sequence[UUID], host_id: UUID | None) -> tuple[UUID, ...]:
    """Co-hosts as the room stores them, in the order given; `InvalidCohosts` unless they are at most
    MAX_COHOSTS distinct users other than `host_id` (when known: else the change's statement checks)."""
    cohosts = tuple(cohost_ids)
    if len(cohosts) > MAX_COHOSTS:
        raise InvalidCohosts(f"cohostIds must name at most {MAX_COHOSTS} users")
    if len(set(cohosts)) != len(cohosts):
        raise InvalidCohosts("cohostIds must not name a user twice")
    if host_id in cohosts:
        raise InvalidCohosts("cohostIds must not name the room's host")
    return cohosts


# How far in the past a start may be: the client's clock may be behind ours.
START_SKEW_SECONDS = 60
# How soon a moved end may come at the earliest: far enough that the room's people can be told.
MIN_END_NOTICE_SECONDS = 10


class Schedule(NamedTuple):
    """A room's start and end as asked (None: not asked, the default applies)."""

    starts_at: datetime | None
    expires_at: datetime | None


# A room asked for without a start or an end: it opens at once and lasts ROOMS_ROOM_TTL_SECONDS.
UNSCHEDULED = Schedule(None, None)


def schedule_bounds(settings: Settings) -> ScheduleBounds:
    """The bounds a PATCH's statement holds a moved start or end to (see `schedule_refusal`)."""
    return ScheduleBounds(
        longest=settings.max_room_seconds,
        furthest_ahead=settings.max_schedule_days * 86400,
        past_skew=START_SKEW_SECONDS,
        end_notice=MIN_END_NOTICE_SECONDS,
    )


def schedule_refusal(reason: str, settings: Settings) -> InvalidSchedule:
    """The error of a start or an end out of bounds, by the name a create's check and a PATCH's
    statement both give the bound it breaks: the field and the bound."""
    days, longest = settings.max_schedule_days, settings.max_room_seconds
    details = {
        "start_in_past": f"startsAt must be at most {START_SKEW_SECONDS} s in the past",
        "start_too_far": f"startsAt must be at most {days} days ahead (ROOMS_MAX_SCHEDULE_DAYS)",
        "end_too_soon": f"expiresAt must be at least {MIN_END_NOTICE_SECONDS} s from now",
        "ends_before_start": "expiresAt must be after startsAt",
        "too_long": f"expiresAt must be at most {longest} s after startsAt (ROOMS_MAX_ROOM_SECONDS)",
    }
    return InvalidSchedule(details[reason])


def checked_schedule(settings: Settings, asked: Schedule) -> Schedule:
    """A new room's start and end as asked, or `InvalidSchedule`. The start defaults to now (the
    database's) and the end to ROOMS_ROOM_TTL_SECONDS after the start, neither of which needs a
    check. (A PATCH's statement checks the same bounds, on the room as the change would leave it.)"""
    now = datetime.now(UTC)
    bounds = schedule_bounds(settings)
    starts_at, expires_at = asked
    if starts_at is not None:
        if starts_at < now - timedelta(seconds=bounds.past_skew):
            raise schedule_refusal("start_in_past", settings)
        if starts_at > now + timedelta(seconds=bounds.furthest_ahead):
            raise schedule_refusal("start_too_far", settings)
    if expires_at is not None:
        start = now if starts_at is None else starts_at
        if expires_at < now + timedelta(seconds=bounds.end_notice):
            raise schedule_refusal("end_too_soon", settings)
        if expires_at <= start:
            raise schedule_refusal("ends_before_start", settings)
        if expires_at - start > timedelta(seconds=bounds.longest):
            raise schedule_refusal("too_long", settings)
    return asked


class Timeouts(NamedTuple):
    """A room's presence timeouts as asked, in seconds (0: never): how long it may stay empty after its
    last participant left, and how long after its start it may stay if nobody joined, before the worker
    ends it. None: not asked (on create the deployment's default, on a change as it is). Their bounds,
    0 .. MAX_PRESENCE_TIMEOUT_SECONDS, are the body's (api/bodies.py) and the database's."""

    empty_seconds: int | None = None
    unused_seconds: int | None = None


# Timeouts not asked for: a new room takes the deployment's, a change leaves the room's as they are.
DEFAULT_TIMEOUTS = Timeouts()


def timeouts_of_new_room(settings: Settings, asked: Timeouts) -> tuple[int, int]:
    """The timeouts a new room is stored with: those asked, else ROOMS_EMPTY_TIMEOUT_SECONDS and
    ROOMS_UNUSED_TIMEOUT_SECONDS. Always both: the table's own default (0) is for earlier releases' rooms."""
    empty, unused = asked
    return (
        settings.empty_timeout_seconds if empty is None else empty,
        settings.unused_timeout_seconds if unused is None else unused,
    )
