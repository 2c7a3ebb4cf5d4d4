"""The room model: what is stored, what is cached for Signaling, what clients see, and daily figures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NamedTuple
from uuid import UUID

import msgspec

from common.settings import MAX_PRESENCE_TIMEOUT_SECONDS

# What a room is now: booked and not yet started, started and not yet ended, or ended.
Status = Literal["scheduled", "active", "ended"]
# What a live room (one that answers 200) is now.
LiveStatus = Literal["scheduled", "active"]
# Which of a user's rooms to list: those of one status, or all.
RoomStatus = Literal["scheduled", "active", "ended", "all"]
# Which rooms of a user to list: those they host, those naming them a co-host, or either.
RoomRole = Literal["host", "cohost", "any"]

# How many co-hosts a room may have (the database checks it too: migrations/0009_room_cohosts.sql).
MAX_COHOSTS = 10
# How many participants a room may bar (the database checks it too: migrations/0015_room_removals.sql).
MAX_REMOVED = 1000

# A room's metadata: a JSON object its host sets (at most ROOMS_METADATA_MAX_BYTES as compact JSON).
Metadata = dict[str, Any]

# A room's presence timeouts as clients see them: what they mean, for the API's description.
EmptyTimeout = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=MAX_PRESENCE_TIMEOUT_SECONDS,
        description="Seconds a room may stay empty after its last participant leaves before it ends; 0 never.",
    ),
]
UnusedTimeout = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=MAX_PRESENCE_TIMEOUT_SECONDS,
        description="Seconds after its start a room nobody joined may stay before it ends; 0 never.",
    ),
]

# One encoder for the JSON the service makes itself (answers, the stream's timestamps): built once.
# Room objects and the events' data are not made here: they are the database's JSON (`CachedRoom`).
JSON_ENCODER = msgspec.json.Encoder()


class Room(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The fields of a live room's object (`room:{roomId}` in Redis) that this code reads.

    The object itself is the JSON the database makes (room_event_data), written as it is: it may hold
    fields this struct lacks (a newer release's), which a reader decoding into it ignores and a writer
    never drops. Signaling reads `id`, `hostId` and `maxParticipants` (see docs/signaling.md): those
    names never change. Optional fields are left out when unset (`omit_defaults`), as room_event_data
    leaves them out.
    """

    id: UUID
    room_id: str
    host_id: UUID
    max_participants: int
    created_at: datetime
    expires_at: datetime
    # The room's revision: 1 when created, one more for each change. Cache writers compare it so that
    # an older read never overwrites a newer object (common/redis/lua/put_room.lua).
    version: int
    # When the room opens: `scheduled` before, `active` after. Absent from the objects written before
    # rooms had a start (such a room started at its creation): read `start`.
    starts_at: datetime | None = None
    metadata: Metadata | None = None
    # Users the host named, who may change the limit and metadata and end the room; never the host.
    cohost_ids: tuple[UUID, ...] = ()
    # Participants its host or a co-host removed: barred until the room ends (join.lua reads them).
    removed_ids: tuple[str, ...] = ()
    # Seconds the room may stay empty after its last participant left, and seconds after its start it
    # may stay if nobody joined, before the worker ends it; 0: never. Objects of earlier releases lack
    # them: their rooms, and the rows from before the columns, never end so.
    empty_timeout_seconds: int = 0
    unused_timeout_seconds: int = 0

    @property
    def start(self) -> datetime:
        return self.created_at if self.starts_at is None else self.starts_at


class CachedRoom(NamedTuple):
    """A room object to write at `room:{roomId}`: `data`, its JSON as the database made it
    (room_event_data, read in the statement that read the room), is what is written, as it is, so a
    process of an older release drops no field a newer one added; `room` holds what the writer reads
    (code, version, expiry)."""

    room: Room
    data: str


class RoomView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A live room as clients see it: the same body whether it was served from Redis or Postgres."""

    room_id: str
    host_id: UUID
    max_participants: int
    created_at: datetime
    starts_at: datetime
    expires_at: datetime
    # `scheduled` until `startsAt`, then `active` (an ended room answers 410).
    status: LiveStatus
    # Always in the body, null when the room has none: a stable shape for clients.
    metadata: Metadata | None = None
    # Always in the body, empty when the room has none.
    cohost_ids: tuple[UUID, ...] = ()
    empty_timeout_seconds: EmptyTimeout
    unused_timeout_seconds: UnusedTimeout


class CachedView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a GET reads of a cached room object (fewer fields to decode than `Room`): the fields of
    `RoomView` the object holds. The start is absent from objects written before rooms had one."""

    room_id: str
    host_id: UUID
    max_participants: int
    created_at: datetime
    starts_at: datetime | None = None
    expires_at: datetime
    metadata: Metadata | None = None
    cohost_ids: tuple[UUID, ...] = ()
    empty_timeout_seconds: int = 0  # absent from objects of earlier releases: never
    unused_timeout_seconds: int = 0


class StoredRoom(msgspec.Struct, frozen=True, kw_only=True):
    """A `meetings` row, plus whether it is live by the database's clock."""

    room: Room
    live: bool


class CacheableRoom(StoredRoom, frozen=True, kw_only=True):
    """A `meetings` row read to be cached if live: with the room object as the database makes it."""

    data: str

    @property
    def cached(self) -> CachedRoom:
        return CachedRoom(self.room, self.data)


class DailyStats(msgspec.Struct, frozen=True, rename="camel"):
    """One UTC day of room activity, as recorded from the event stream."""

    day: date
    rooms_created: int
    rooms_ended: int
    distinct_hosts: int
    # Rooms that opened that day: booked ones on the day of their start, the others when created.
    rooms_started: int
    # Sessions that ended that day (`session.ended`), and their participant-seconds summed (to the ms).
    sessions: int
    participant_seconds: float


def live_status(start: datetime, now: datetime | None = None) -> LiveStatus:
    """What a live room starting at `start` is at `now` (this process's clock, by default)."""
    return "scheduled" if start > (datetime.now(UTC) if now is None else now) else "active"


def to_view(room: Room | CachedView) -> RoomView:
    """A live room's view (from its row, or its cached object), its status as of now."""
    start = room.created_at if room.starts_at is None else room.starts_at
    return RoomView(
        room_id=room.room_id,
        host_id=room.host_id,
        max_participants=room.max_participants,
        created_at=room.created_at,
        starts_at=start,
        expires_at=room.expires_at,
        status=live_status(start),
        metadata=room.metadata,
        cohost_ids=room.cohost_ids,
        empty_timeout_seconds=room.empty_timeout_seconds,
        unused_timeout_seconds=room.unused_timeout_seconds,
    )
