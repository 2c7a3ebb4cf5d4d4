"""SQL for rooms, their events and their history: one typed function per statement, the statement beside it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from common.database import Connection
from common.events import RoomEvent, encode_data, from_outbox
from common.rooms import Room, StoredRoom


class Outboxed(NamedTuple):
    """An event and its outbox row, which is marked once the event is on the stream."""

    outbox_id: int
    event: RoomEvent


class DailyStats(msgspec.Struct, frozen=True, rename="camel"):
    day: date
    rooms_created: int
    rooms_ended: int
    distinct_hosts: int


def _room(row: asyncpg.Record) -> Room:
    return Room(
        id=row["id"],
        room_id=row["room_id"],
        host_id=row["host_id"],
        max_participants=row["max_participants"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        version=row["version"],
    )


def _outboxed(row: asyncpg.Record) -> Outboxed:
    return Outboxed(row["outbox_id"], from_outbox(row))


# -- rooms ------------------------------------------------------------------------------------

# One statement, so one transaction: the room, its `room.created` event and, when the request carries
# one, its Idempotency-Key exist together or not at all. A key still live (24 h) makes the claim, and
# so the whole insert, come out empty; a concurrent request with the same key waits for this one.
_CREATE_ROOM = """
WITH claim AS (
    INSERT INTO idempotency_keys AS k (host_id, key, request_hash, room_id)
    SELECT $2, $5, $6, $1 WHERE $5::text IS NOT NULL
    ON CONFLICT (host_id, key) DO UPDATE
        SET request_hash = excluded.request_hash, room_id = excluded.room_id, created_at = now()
        WHERE k.created_at <= now() - interval '24 hours'
    RETURNING 1
), room AS (
    INSERT INTO meetings (room_id, host_id, max_participants, expires_at)
    SELECT $1, $2, $3, now() + make_interval(secs => $4)
    WHERE $5::text IS NULL OR EXISTS (SELECT 1 FROM claim)
    RETURNING id, room_id, host_id, max_participants, created_at, expires_at, version,
              room_event_data(meetings) AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, occurred_at, data)
    SELECT 'room.created', room_id, version, created_at, data FROM room
    RETURNING id AS outbox_id, event_id, type, occurred_at
)
SELECT room.*, event.* FROM room, event
"""


async def create_room(
    conn: Connection,
    room_id: str,
    host_id: UUID,
    max_participants: int,
    ttl_seconds: int,
    *,
    idempotency: tuple[str, str] | None = None,
) -> tuple[Room, Outboxed] | None:
    """Insert a meeting living `ttl_seconds` and its outbox event, claiming `idempotency` (key, request
    hash) if given. None if that key is already taken (see `find_by_key`). Raises `UniqueViolationError`
    on a taken room code."""
    key, request_hash = idempotency or (None, None)
    row = await conn.fetchrow(_CREATE_ROOM, room_id, host_id, max_participants, float(ttl_seconds), key, request_hash)
    return None if row is None else (_room(row), _outboxed(row))


_FIND_BY_KEY = """
SELECT k.request_hash, m.id, m.room_id, m.host_id, m.max_participants, m.created_at, m.expires_at, m.version
FROM idempotency_keys k JOIN meetings m USING (room_id)
WHERE k.host_id = $1 AND k.key = $2 AND k.created_at > now() - interval '24 hours'
"""


async def find_by_key(conn: Connection, host_id: UUID, key: str) -> tuple[str, Room] | None:
    """The room a live Idempotency-Key made, with the hash of the request that made it."""
    row = await conn.fetchrow(_FIND_BY_KEY, host_id, key)
    return None if row is None else (row["request_hash"], _room(row))


async def prune_idempotency_keys(conn: Connection, limit: int) -> int:
    status = await conn.execute(
        """
        DELETE FROM idempotency_keys WHERE (host_id, key) IN (
            SELECT host_id, key FROM idempotency_keys WHERE created_at <= now() - interval '24 hours' LIMIT $1
        )
        """,
        limit,
    )
    return int(status.split()[-1])


_GET_ROOM = """
SELECT id, room_id, host_id, max_participants, created_at, expires_at, version,
       is_active AND expires_at > now() AS live
FROM meetings
WHERE room_id = $1
"""


async def get_room(conn: Connection, room_id: str) -> StoredRoom | None:
    row = await conn.fetchrow(_GET_ROOM, room_id)
    if row is None:
        return None
    return StoredRoom(room=_room(row), live=row["live"])


_HOST_ROOMS = """
SELECT id, room_id, host_id, max_participants, created_at, expires_at, version,
       is_active AND expires_at > now() AS live
FROM meetings
WHERE host_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
  AND CASE $4::text
        WHEN 'active' THEN is_active AND expires_at > now()
        WHEN 'ended' THEN NOT (is_active AND expires_at > now())
        ELSE true
      END
ORDER BY created_at DESC, id DESC
LIMIT $5
"""


async def host_rooms(
    conn: Connection, host_id: UUID, status: str, limit: int, before: tuple[datetime, UUID] | None
) -> list[StoredRoom]:
    """A host's rooms, newest first, starting after the keyset position `before` (created_at, id)."""
    created_at, room_uuid = before if before else (None, None)
    rows = await conn.fetch(_HOST_ROOMS, host_id, created_at, room_uuid, status, limit)
    return [StoredRoom(room=_room(row), live=row["live"]) for row in rows]


async def room_owner(conn: Connection, room_id: str) -> tuple[UUID, bool] | None:
    """Who hosts the room and whether it is live; None if there is no such room."""
    row = await conn.fetchrow(
        "SELECT host_id, is_active AND expires_at > now() AS live FROM meetings WHERE room_id = $1", room_id
    )
    return None if row is None else (row["host_id"], row["live"])


# A change made by the API publishes at once only if no earlier event of the room is still waiting in
# the outbox: the relay publishes in order, so per-room order holds either way. (The outer query's
# snapshot does not see this statement's own event row.)
_UPDATE_LIMIT = """
WITH room AS (
    UPDATE meetings m SET max_participants = $3, version = m.version + 1
    WHERE m.room_id = $1 AND m.host_id = $2 AND m.is_active AND m.expires_at > now()
    RETURNING m.id, m.room_id, m.host_id, m.max_participants, m.created_at, m.expires_at, m.version,
              room_event_data(m) AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, data)
    SELECT 'room.updated', room_id, version, data FROM room
    RETURNING id AS outbox_id, event_id, type, occurred_at
)
SELECT room.*, event.*,
       NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = $1 AND e.published_at IS NULL) AS publish_now
FROM room, event
"""


async def update_max_participants(
    conn: Connection, room_id: str, host_id: UUID, max_participants: int
) -> tuple[Room, Outboxed, bool] | None:
    """Change a live room of this host; None if there is no such live room of theirs (see `room_owner`)."""
    row = await conn.fetchrow(_UPDATE_LIMIT, room_id, host_id, max_participants)
    return None if row is None else (_room(row), _outboxed(row), row["publish_now"])


_END_ROOM = """
WITH ended AS (
    UPDATE meetings m SET is_active = false, version = m.version + 1
    WHERE m.room_id = $1 AND m.host_id = $2 AND m.is_active AND m.expires_at > now()
    RETURNING m.room_id, m.version, room_event_data(m, 'deleted') AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, data)
    SELECT 'room.ended', room_id, version, data FROM ended
    RETURNING id AS outbox_id, event_id, type, room_id, version, occurred_at, data
)
SELECT event.*,
       NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = $1 AND e.published_at IS NULL) AS publish_now
FROM event
"""


async def end_room(conn: Connection, room_id: str, host_id: UUID) -> tuple[Outboxed, bool] | None:
    """Soft-delete an active room of this host; None if there is none (already ended, or not theirs)."""
    row = await conn.fetchrow(_END_ROOM, room_id, host_id)
    return None if row is None else (_outboxed(row), row["publish_now"])


async def room_exists(conn: Connection, room_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM meetings WHERE room_id = $1)", room_id))


_LIVE_ROOMS_AFTER = """
SELECT id, room_id, host_id, max_participants, created_at, expires_at, version
FROM meetings
WHERE is_active AND room_id > $1 AND expires_at > now()
ORDER BY room_id
LIMIT $2
"""


async def live_rooms_after(conn: Connection, after_room_id: str, limit: int) -> list[Room]:
    """The next `limit` live rooms in code order: a keyset page, so a sweep never holds them all."""
    return [_room(row) for row in await conn.fetch(_LIVE_ROOMS_AFTER, after_room_id, limit)]


# Rooms past their lifetime end, each with its `room.ended` event, in one statement. SKIP LOCKED lets
# several workers expire at once without waiting on each other.
_EXPIRE_ROOMS = """
WITH ended AS (
    UPDATE meetings m SET is_active = false, version = m.version + 1
    WHERE m.id IN (
        SELECT id FROM meetings
        WHERE is_active AND expires_at <= now()
        ORDER BY expires_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING m.room_id, m.version, room_event_data(m, 'expired') AS data
)
INSERT INTO room_events (type, room_id, version, data)
SELECT 'room.ended', room_id, version, data FROM ended
RETURNING id AS outbox_id, event_id, type, room_id, version, occurred_at, data
"""


async def expire_rooms(conn: Connection, limit: int) -> list[Outboxed]:
    return [_outboxed(row) for row in await conn.fetch(_EXPIRE_ROOMS, limit)]


# -- the outbox -------------------------------------------------------------------------------


async def mark_published(conn: Connection, outbox_ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE room_events SET published_at = now() WHERE id = any($1::bigint[]) AND published_at IS NULL",
        list(outbox_ids),
    )


_UNPUBLISHED = """
SELECT id AS outbox_id, event_id, type, room_id, version, occurred_at, data
FROM room_events
WHERE published_at IS NULL AND occurred_at < now() - make_interval(secs => $1)
ORDER BY id
LIMIT $2
"""


async def unpublished_events(conn: Connection, grace_seconds: float, limit: int) -> list[Outboxed]:
    """Events not yet on the stream, oldest first, leaving the youngest to the API that wrote them."""
    return [_outboxed(row) for row in await conn.fetch(_UNPUBLISHED, grace_seconds, limit)]


async def prune_published(conn: Connection, older_than_seconds: int, limit: int) -> int:
    """Delete published outbox rows older than the stream keeps them; returns how many."""
    status = await conn.execute(
        """
        DELETE FROM room_events WHERE id IN (
            SELECT id FROM room_events
            WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)
            LIMIT $2
        )
        """,
        float(older_than_seconds),
        limit,
    )
    return int(status.split()[-1])


# -- history and daily aggregates ---------------------------------------------------------------

# Idempotent by event_id: an event delivered twice is recorded, and counted, once. The aggregates
# change in the same statement as the history rows, so they never disagree.
_RECORD_HISTORY = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::jsonb[])
        AS e(event_id, room_id, type, version, occurred_at, data)
), recorded AS (
    INSERT INTO room_history (event_id, room_id, type, version, occurred_at, data)
    SELECT * FROM incoming
    ON CONFLICT (event_id) DO NOTHING
    RETURNING type, (occurred_at AT TIME ZONE 'UTC')::date AS day, data
), counted AS (
    INSERT INTO daily_room_stats AS s (day, rooms_created, rooms_ended)
    SELECT day, count(*) FILTER (WHERE type = 'room.created'), count(*) FILTER (WHERE type = 'room.ended')
    FROM recorded GROUP BY day ORDER BY day
    ON CONFLICT (day) DO UPDATE
        SET rooms_created = s.rooms_created + excluded.rooms_created,
            rooms_ended = s.rooms_ended + excluded.rooms_ended
), hosted AS (
    INSERT INTO daily_room_hosts (day, host_id)
    SELECT DISTINCT day, (data ->> 'hostId')::uuid FROM recorded WHERE type = 'room.created'
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM recorded  -- every CTE above runs to completion whether read or not
"""


async def record_history(conn: Connection, events: Sequence[RoomEvent]) -> int:
    """Record events not seen before and count them into the daily aggregates; returns how many were new."""
    recorded = await conn.fetchval(
        _RECORD_HISTORY,
        [e.event_id for e in events],
        [e.room_id for e in events],
        [e.type for e in events],
        [e.version for e in events],
        [e.occurred_at for e in events],
        [encode_data(e).decode() for e in events],
    )
    return int(recorded)


_ROOM_HISTORY = """
SELECT NULL::bigint AS outbox_id, event_id, type, room_id, version, occurred_at, data
FROM room_history
WHERE room_id = $1
ORDER BY occurred_at, version
"""


async def room_history(conn: Connection, room_id: str) -> list[RoomEvent]:
    """A room's recorded lifecycle, oldest first."""
    return [from_outbox(row) for row in await conn.fetch(_ROOM_HISTORY, room_id)]


_DAILY_STATS = """
SELECT d::date AS day,
       coalesce(s.rooms_created, 0) AS rooms_created,
       coalesce(s.rooms_ended, 0) AS rooms_ended,
       (SELECT count(*) FROM daily_room_hosts h WHERE h.day = d::date) AS distinct_hosts
FROM generate_series($1::date, $2::date, interval '1 day') AS d
LEFT JOIN daily_room_stats s ON s.day = d::date
ORDER BY d
"""


async def daily_stats(conn: Connection, first: date, last: date) -> list[DailyStats]:
    """One row per UTC day from `first` to `last` inclusive, zeros where nothing happened."""
    return [
        DailyStats(
            day=row["day"],
            rooms_created=row["rooms_created"],
            rooms_ended=row["rooms_ended"],
            distinct_hosts=row["distinct_hosts"],
        )
        for row in await conn.fetch(_DAILY_STATS, first, last)
    ]
