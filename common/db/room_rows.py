"""What a `meetings` row is to the code: the columns a `Room` needs, when a row is live, and its decoder.

The statements of common/db/rooms.py take these from here, so the rule for "live" is written once.
"""

from __future__ import annotations

import asyncpg
import msgspec

from common.rooms.model import CacheableRoom, CachedRoom, Metadata, Room, StoredRoom

# A room may be joined while it has not been ended and has not expired (by the database's clock).
LIVE = "is_active AND expires_at > now()"

# A room's start: a row from before rooms had one (NULL) started at its creation.
ROOM_START = "coalesce(starts_at, created_at)"

ROOM_COLUMNS = (
    "id, room_id, host_id, max_participants, created_at, expires_at, version, metadata, cohost_ids, removed_ids, "
    f"empty_timeout_seconds, unused_timeout_seconds, {ROOM_START} AS starts_at"
)

# The room object as the database defines it (the JSON cached at room:{roomId}), beside ROOM_COLUMNS
# in a statement that reads rooms to cache them (FROM meetings: the row is `meetings`).
ROOM_OBJECT = "room_event_data(meetings) AS data"

# asyncpg hands jsonb over as its text.
_METADATA = msgspec.json.Decoder(Metadata)


def room_from_row(row: asyncpg.Record) -> Room:
    return Room(
        id=row["id"],
        room_id=row["room_id"],
        host_id=row["host_id"],
        max_participants=row["max_participants"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        starts_at=row["starts_at"],
        version=row["version"],
        metadata=None if (metadata := row["metadata"]) is None else _METADATA.decode(metadata),
        cohost_ids=tuple(row["cohost_ids"]),
        removed_ids=tuple(row["removed_ids"]),
        empty_timeout_seconds=row["empty_timeout_seconds"],
        unused_timeout_seconds=row["unused_timeout_seconds"],
    )


def stored_room_from_row(row: asyncpg.Record) -> StoredRoom:
    """A row read with `{LIVE} AS live` beside the room columns."""
    return StoredRoom(room=room_from_row(row), live=row["live"])


def cached_room_from_row(row: asyncpg.Record) -> CachedRoom:
    """A row read with `ROOM_OBJECT` beside the room columns."""
    return CachedRoom(room_from_row(row), row["data"])


def cacheable_room_from_row(row: asyncpg.Record) -> CacheableRoom:
    """A row read with `{LIVE} AS live` and `ROOM_OBJECT` beside the room columns."""
    return CacheableRoom(room=room_from_row(row), live=row["live"], data=row["data"])
