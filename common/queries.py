"""SQL for rooms: one typed function per statement, the statement beside it."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from common.database import Connection
from common.rooms import Room, StoredRoom

_INSERT_ROOM = """
INSERT INTO meetings (room_id, host_id, max_participants, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING id, room_id, host_id, max_participants, created_at, expires_at
"""

_GET_ROOM = """
SELECT id, room_id, host_id, max_participants, created_at, expires_at,
       is_active AND expires_at > now() AS live
FROM meetings
WHERE room_id = $1
"""


def _room(row: asyncpg.Record) -> Room:
    return Room(
        id=row["id"],
        room_id=row["room_id"],
        host_id=row["host_id"],
        max_participants=row["max_participants"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


async def insert_room(conn: Connection, room_id: str, host_id: UUID, max_participants: int, ttl_seconds: int) -> Room:
    """Insert a meeting that lives `ttl_seconds` from now. Raises `asyncpg.UniqueViolationError` on a taken code."""
    row = await conn.fetchrow(_INSERT_ROOM, room_id, host_id, max_participants, float(ttl_seconds))
    assert row is not None  # INSERT ... RETURNING yields its row or raises
    return _room(row)


async def get_room(conn: Connection, room_id: str) -> StoredRoom | None:
    row = await conn.fetchrow(_GET_ROOM, room_id)
    if row is None:
        return None
    return StoredRoom(room=_room(row), live=row["live"])
