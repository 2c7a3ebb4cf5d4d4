"""Statements on rooms (`meetings`), each writing the change's outbox event in the same statement.

One typed function per statement, the statement beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from common.db.idempotency import LIVE_KEY
from common.db.outbox import Outboxed, outboxed_from_row
from common.db.pool import Connection
from common.db.publication import GENERATION
from common.db.room_rows import (
    LIVE,
    ROOM_COLUMNS,
    ROOM_OBJECT,
    ROOM_START,
    cacheable_room_from_row,
    cached_room_from_row,
    room_from_row,
    stored_room_from_row,
)
from common.rooms.model import CacheableRoom, CachedRoom, Room, RoomRole, RoomStatus, StoredRoom


class NewRoom(NamedTuple):
    """A room to create, claiming `idempotency` (key, request hash) if given; `traceparent`: of the
    request that asks for it, for its event (common/tracing.py); `metadata`: its metadata as compact
    JSON, if any; `cohost_ids`: its co-hosts. It starts at `starts_at`, or at once (the database's
    now), and ends at `expires_at`, or `ttl_seconds` after its start; the worker ends it sooner once
    it has stayed empty `empty_timeout_seconds`, or unused `unused_timeout_seconds` (0: never)."""

    room_id: str
    host_id: UUID
    max_participants: int
    ttl_seconds: int
    idempotency: tuple[str, str] | None = None
    traceparent: str | None = None
    metadata: str | None = None
    cohost_ids: tuple[UUID, ...] = ()
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    empty_timeout_seconds: int = 0
    unused_timeout_seconds: int = 0


# One statement, so one transaction, for any number of rooms: each room, its `room.created` event and,
# when its request carries one, its Idempotency-Key exist together or not at all. A key still live
# makes its claim, and so that room's insert, come out empty; a concurrent request with the same key
# waits for this one. (The rows of one call must not share a key: Postgres refuses to claim one
# twice in a statement.)
_CREATE_ROOMS = f"""
WITH new AS (
    SELECT * FROM unnest(
        $1::text[], $2::uuid[], $3::int[], $4::float8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
        $10::timestamptz[], $11::timestamptz[], $12::int[], $13::int[]
    ) AS new (
        room_id, host_id, max_participants, ttl_seconds, key, request_hash, traceparent, metadata, cohost_ids,
        starts_at, expires_at, empty_timeout_seconds, unused_timeout_seconds
    )
), claim AS (
    INSERT INTO idempotency_keys AS k (host_id, key, request_hash, room_id)
    SELECT host_id, key, request_hash, room_id FROM new WHERE key IS NOT NULL
    ORDER BY host_id, key  -- every statement locks keys in one order: two cannot deadlock
    ON CONFLICT (host_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, room_id = excluded.room_id, created_at = now()
        WHERE NOT ({LIVE_KEY})
    RETURNING k.room_id
), room AS (
    INSERT INTO meetings (
        room_id, host_id, max_participants, starts_at, expires_at, started, metadata, cohost_ids,
        empty_timeout_seconds, unused_timeout_seconds
    )
    SELECT room_id, host_id, max_participants, start,
           coalesce(expires_at, start + make_interval(secs => ttl_seconds)),
           start <= now(),  -- a room booked ahead starts later, with `room.started` (common/db/lifecycle.py)
           metadata::jsonb,
           -- each room's list as an array literal: unnest takes no ragged arrays
           coalesce(cohost_ids::uuid[], '{{}}'),
           empty_timeout_seconds, unused_timeout_seconds  -- always given: the table's 0 is for older writers
    FROM new, LATERAL (SELECT coalesce(new.starts_at, now()) AS start) AS s
    WHERE key IS NULL OR room_id IN (SELECT room_id FROM claim)
    RETURNING {ROOM_COLUMNS}, room_event_data(meetings) AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, occurred_at, data, traceparent)
    SELECT 'room.created', room.room_id, version, created_at, data, new.traceparent
    FROM room JOIN new ON new.room_id = room.room_id  -- each room's event, its own request's traceparent
    RETURNING id AS outbox_id, event_id, type, occurred_at, traceparent, room_id AS event_room_id
)
SELECT room.*, event.*, {GENERATION} AS generation FROM room JOIN event ON event.event_room_id = room.room_id
"""


async def create_rooms(conn: Connection, new: Sequence[NewRoom]) -> list[tuple[Room, Outboxed] | None]:
    """Insert the rooms and their outbox events; for each, in order, the room and its event, or None
    if its Idempotency-Key is already taken (see `find_by_key`). Raises `UniqueViolationError` if a
    room code is taken, and then creates none."""
    keys = [room.idempotency or (None, None) for room in new]
    traceparents = [room.traceparent for room in new]
    metadata = [room.metadata for room in new]
    cohosts = [_array_literal(room.cohost_ids) for room in new]
    rows = await conn.fetch(
        _CREATE_ROOMS,
        [room.room_id for room in new],
        [room.host_id for room in new],
        [room.max_participants for room in new],
        [float(room.ttl_seconds) for room in new],
        [key for key, _ in keys],
        [request_hash for _, request_hash in keys],
        # While tracing is off, none: a NULL array, which unnest pads with NULLs, costs no encoding.
        traceparents if any(traceparents) else None,
        metadata if any(m is not None for m in metadata) else None,  # likewise for rooms without metadata
        cohosts if any(cohosts) else None,  # and without co-hosts
        *_schedule(new),
        [room.empty_timeout_seconds for room in new],
        [room.unused_timeout_seconds for room in new],
    )
    made = {row["room_id"]: (room_from_row(row), outboxed_from_row(row)) for row in rows}
    return [made.get(room.room_id) for room in new]


def _schedule(new: Sequence[NewRoom]) -> tuple[list[datetime | None] | None, list[datetime | None] | None]:
    """The starts and ends asked for, each array None when no room asks for one (the usual create)."""
    starts = [room.starts_at for room in new]
    ends = [room.expires_at for room in new]
    return (
        starts if any(start is not None for start in starts) else None,
        ends if any(end is not None for end in ends) else None,
    )


def _array_literal(ids: Sequence[UUID]) -> str | None:
    """A Postgres array literal of uuids (`{a,b}`), None for none: uuids need no quoting."""
    return "{" + ",".join(map(str, ids)) + "}" if ids else None


# Every caller caches the room if it is live: the object comes with it, in the same round trip.
_GET_ROOM = f"SELECT {ROOM_COLUMNS}, {LIVE} AS live, {ROOM_OBJECT} FROM meetings WHERE room_id = $1"


async def get_room(conn: Connection, room_id: str) -> CacheableRoom | None:
    row = await conn.fetchrow(_GET_ROOM, room_id)
    return None if row is None else cacheable_room_from_row(row)


# Whose rooms: `$1`'s as host, as co-host, or either. The co-host condition repeats the predicate of
# meetings_cohost_ids_idx so that the planner may use that index.
_AS_COHOST = "(cohost_ids @> ARRAY[$1::uuid] AND cardinality(cohost_ids) > 0)"
_OF_USER = {"host": "host_id = $1", "cohost": _AS_COHOST, "any": f"(host_id = $1 OR {_AS_COHOST})"}

USER_ROOMS = {
    role: f"""
SELECT {ROOM_COLUMNS}, {LIVE} AS live
FROM meetings
WHERE {of_user}
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
  AND CASE $4::text
        WHEN 'scheduled' THEN {LIVE} AND {ROOM_START} > now()
        WHEN 'active' THEN {LIVE} AND {ROOM_START} <= now()
        WHEN 'ended' THEN NOT ({LIVE})
        ELSE true
      END
ORDER BY created_at DESC, id DESC
LIMIT $5
"""
    for role, of_user in _OF_USER.items()
}


async def user_rooms(
    conn: Connection,
    user_id: UUID,
    *,
    role: RoomRole,
    status: RoomStatus,
    limit: int,
    before: tuple[datetime, UUID] | None,
) -> list[StoredRoom]:
    """A user's rooms in `role`, newest first, starting after the keyset position `before` (created_at, id)."""
    created_at, room_uuid = before if before else (None, None)
    rows = await conn.fetch(USER_ROOMS[role], user_id, created_at, room_uuid, status, limit)
    return [stored_room_from_row(row) for row in rows]


class Access(NamedTuple):
    """Who may act on a room: its host and co-hosts; and whether it is live."""

    host_id: UUID
    cohost_ids: list[UUID]
    live: bool

    def names(self, user_id: UUID) -> bool:
        """Whether `user_id` is the host or a co-host."""
        return user_id == self.host_id or user_id in self.cohost_ids


async def room_access(conn: Connection, room_id: str) -> Access | None:
    """The room's host, co-hosts and whether it is live; None if there is no such room."""
    row = await conn.fetchrow(f"SELECT host_id, cohost_ids, {LIVE} AS live FROM meetings WHERE room_id = $1", room_id)
    return None if row is None else Access(row["host_id"], row["cohost_ids"], row["live"])


_LIVE_ROOMS_AFTER = f"""
SELECT {ROOM_COLUMNS}, {ROOM_OBJECT}
FROM meetings
WHERE {LIVE} AND room_id > $1
ORDER BY room_id
LIMIT $2
"""


async def live_rooms_after(conn: Connection, after_room_id: str, limit: int) -> list[CachedRoom]:
    """The next `limit` live rooms in code order: a keyset page, so a sweep never holds them all."""
    return [cached_room_from_row(row) for row in await conn.fetch(_LIVE_ROOMS_AFTER, after_room_id, limit)]
