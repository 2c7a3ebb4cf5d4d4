"""Room policy: what a room may be and what it is by default. These settings are the rules clients meet
(a create's defaults, a body's bounds), where the rest of `Settings` is how the deployment runs."""

from __future__ import annotations

from typing import Annotated

import msgspec

from common.settings.values import ENV_PREFIX, SettingsError

# What a request body holds besides its metadata (`{"maxParticipants":1000,"metadata":...,"hostId":...,
# "cohostIds":[ten ids],"startsAt":...,"expiresAt":...,"emptyTimeoutSeconds":86400,
# "unusedTimeoutSeconds":86400}`, about 650 bytes), with room for the whitespace
# and escapes a client may send: ROOMS_MAX_BODY_BYTES must leave this beside the metadata's own limit,
# or a body within every limit could be refused as too large.
BODY_BESIDE_METADATA = 1024

# The database's own check constraint allows no more than this; a tier above it needs a migration.
MAX_PARTICIPANTS_CEILING = 1000

# The longest a room may stay empty, or unused, before it ends (a day); the database checks it too
# (migrations/0016_room_presence_timeouts.sql). 0 is never.
MAX_PRESENCE_TIMEOUT_SECONDS = 86400
PresenceTimeout = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRESENCE_TIMEOUT_SECONDS)]


class RoomPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The settings of rooms. Field `x` is read from `ROOMS_X` (`Settings` is this and the rest)."""

    # Raising the limit is how paid tiers arrive: configuration, not code.
    room_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = 86400
    default_max_participants: Annotated[int, msgspec.Meta(ge=2, le=MAX_PARTICIPANTS_CEILING)] = 4
    max_participants_limit: Annotated[int, msgspec.Meta(ge=2, le=MAX_PARTICIPANTS_CEILING)] = 4
    max_body_bytes: Annotated[int, msgspec.Meta(ge=64, le=1_048_576)] = 4096
    # A room's metadata, measured as compact JSON; it travels in every event and room object.
    metadata_max_bytes: Annotated[int, msgspec.Meta(ge=2, le=1_048_576)] = 2048
    # The calendar: a room may be booked to start this many days ahead at most, and last at most this
    # long from its start (ROOMS_ROOM_TTL_SECONDS is the length of a room created without an end).
    max_schedule_days: Annotated[int, msgspec.Meta(ge=1, le=366)] = 30
    max_room_seconds: Annotated[int, msgspec.Meta(ge=60, le=366 * 86400)] = 7 * 86400
    # Signaling admits participants this long before a room's start (the room object's `opensAtMs`).
    early_join_seconds: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 300
    # A room ends by itself (the worker's presence pass: `room.ended` with reason `empty` or `unused`)
    # once it has stayed empty this long after its last participant left, or once nobody has joined it
    # this long after its start. The values of a room created without its own; each room keeps those it
    # was created with. 0: never.
    empty_timeout_seconds: PresenceTimeout = 300
    unused_timeout_seconds: PresenceTimeout = 1800

    def __post_init__(self) -> None:
        if self.default_max_participants > self.max_participants_limit:
            raise SettingsError(
                f"{ENV_PREFIX}DEFAULT_MAX_PARTICIPANTS ({self.default_max_participants}) must not exceed "
                f"{ENV_PREFIX}MAX_PARTICIPANTS_LIMIT ({self.max_participants_limit})"
            )
        if self.metadata_max_bytes + BODY_BESIDE_METADATA > self.max_body_bytes:
            raise SettingsError(
                f"{ENV_PREFIX}METADATA_MAX_BYTES ({self.metadata_max_bytes}) must leave {BODY_BESIDE_METADATA} "
                f"bytes for the rest of the body within {ENV_PREFIX}MAX_BODY_BYTES ({self.max_body_bytes})"
            )
        # A room created without an end lasts the default length, which must be one it may have.
        if self.room_ttl_seconds > self.max_room_seconds:
            raise SettingsError(
                f"{ENV_PREFIX}ROOM_TTL_SECONDS ({self.room_ttl_seconds}) must not exceed "
                f"{ENV_PREFIX}MAX_ROOM_SECONDS ({self.max_room_seconds})"
            )
