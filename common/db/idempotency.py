"""Idempotency-Keys (`idempotency_keys`): which room a host's key made, for 24 hours.

The claim itself is part of the create statement (common/db/rooms.py), so a room and its key exist
together or not at all.
"""

from __future__ import annotations

from uuid import UUID

from common.db.pool import Connection, deleted_count
from common.db.room_rows import ROOM_COLUMNS, room_from_row
from common.rooms.model import Room

# How long a key is remembered, as SQL: a key older than this may be used again for a new room.
KEY_LIFETIME = "interval '24 hours'"
# A key row still within its lifetime.
LIVE_KEY = f"k.created_at > now() - {KEY_LIFETIME}"

_FIND_BY_KEY = f"""
SELECT k.request_hash, m.*
FROM idempotency_keys k, LATERAL (SELECT {ROOM_COLUMNS} FROM meetings WHERE room_id = k.room_id) AS m
WHERE k.host_id = $1 AND k.key = $2 AND {LIVE_KEY}
"""


async def find_by_key(conn: Connection, host_id: UUID, key: str) -> tuple[str, Room] | None:
    """The room a live Idempotency-Key made, with the hash of the request that made it."""
    row = await conn.fetchrow(_FIND_BY_KEY, host_id, key)
    return None if row is None else (row["request_hash"], room_from_row(row))


_PRUNE = f"""
DELETE FROM idempotency_keys WHERE (host_id, key) IN (
    SELECT host_id, key FROM idempotency_keys k WHERE NOT ({LIVE_KEY}) LIMIT $1
)
"""


async def prune_idempotency_keys(conn: Connection, limit: int) -> int:
    """Delete up to `limit` keys past their lifetime; returns how many."""
    return deleted_count(await conn.execute(_PRUNE, limit))
