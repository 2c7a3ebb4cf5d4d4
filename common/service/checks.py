"""What a room's options must be before anything is stored: the participant limit, the metadata's size,
the co-hosts. Each check answers the value as it is stored, or raises the error the API answers."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from common.errors import InvalidCohosts, MetadataTooLarge, ParticipantLimitOutOfRange
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
