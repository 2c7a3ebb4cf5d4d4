"""What a room's options must be before anything is stored: the participant limit, the metadata's size,
the co-hosts, the start and the end. Each check answers the value as it is stored, or raises the error the
API answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

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


def checked_start(settings: Settings, starts_at: datetime, now: datetime) -> datetime:
    """`InvalidSchedule` unless `starts_at` is at most START_SKEW_SECONDS past and at most
    ROOMS_MAX_SCHEDULE_DAYS ahead."""
    if starts_at < now - timedelta(seconds=START_SKEW_SECONDS):
        raise InvalidSchedule(f"startsAt must be at most {START_SKEW_SECONDS} s in the past")
    days = settings.max_schedule_days
    if starts_at > now + timedelta(days=days):
        raise InvalidSchedule(f"startsAt must be at most {days} days ahead (ROOMS_MAX_SCHEDULE_DAYS)")
    return starts_at


def checked_end(settings: Settings, expires_at: datetime, starts_at: datetime | None, now: datetime) -> datetime:
    """`InvalidSchedule` unless `expires_at` is at least MIN_END_NOTICE_SECONDS away and, where the
    start is known here (`starts_at`), after it and within ROOMS_MAX_ROOM_SECONDS of it. (A PATCH
    leaves the start to the statement, which reads it from the locked row.)"""
    if expires_at < now + timedelta(seconds=MIN_END_NOTICE_SECONDS):
        raise InvalidSchedule(f"expiresAt must be at least {MIN_END_NOTICE_SECONDS} s from now")
    if starts_at is not None:
        if expires_at <= starts_at:
            raise InvalidSchedule("expiresAt must be after startsAt")
        if expires_at - starts_at > timedelta(seconds=settings.max_room_seconds):
            raise InvalidSchedule(too_long(settings))
    return expires_at


def too_long(settings: Settings) -> str:
    return f"expiresAt must be at most {settings.max_room_seconds} s after startsAt (ROOMS_MAX_ROOM_SECONDS)"


def checked_schedule(settings: Settings, asked: Schedule) -> Schedule:
    """A new room's start and end as asked, each checked; the start defaults to now (the database's)
    and the end to ROOMS_ROOM_TTL_SECONDS after the start, neither of which needs a check."""
    now = datetime.now(UTC)
    starts_at = None if asked.starts_at is None else checked_start(settings, asked.starts_at, now)
    if asked.expires_at is None:
        return Schedule(starts_at, None)
    return Schedule(starts_at, checked_end(settings, asked.expires_at, starts_at or now, now))
