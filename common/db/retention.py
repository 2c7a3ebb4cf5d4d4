"""Retention: ended rooms past it leave the database with everything recorded about them, their codes
retired for good (migrations/0012). The daily statistics stay: they name no room.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from common.db.pool import Connection

# A room ends at its expiry or before (ended early by its host): past `expires_at` it has certainly
# ended, so "ended more than the retention ago" is taken as "expired more than the retention ago".
# A room ended early is kept at most its lifetime (ROOMS_ROOM_TTL_SECONDS) longer; no ended_at column
# is needed, and none has to be filled in for the rooms of today.
#
# One statement, so one short transaction, per batch: the rooms (oldest expiry first, from `$2` on,
# an ordered keyset, so no batch walks again over the index entries the earlier ones left dead), their
# history, the outbox rows of that history, their Idempotency-Keys, and the retired codes. A room
# with an event still waiting for the relay stays until it is published (the partial index of
# unpublished events answers that). SKIP LOCKED: two workers pruning at once take different rooms,
# and neither waits for a row someone holds.
_PRUNE_ENDED_ROOMS = """
WITH doomed AS (
    SELECT room_id, expires_at FROM meetings m
    WHERE NOT is_active AND expires_at < now() - make_interval(secs => $1) AND expires_at >= $2
      AND NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = m.room_id AND e.published_at IS NULL)
    ORDER BY expires_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), retired AS (
    INSERT INTO retired_room_codes (room_id) SELECT room_id FROM doomed ON CONFLICT DO NOTHING
), keys AS (
    DELETE FROM idempotency_keys k USING doomed d WHERE k.room_id = d.room_id RETURNING 1
), history AS (
    DELETE FROM room_history h USING doomed d WHERE h.room_id = d.room_id RETURNING h.event_id
), events AS (
    -- By the recorded events' ids (a unique index): room_events has no index of all its rows by room.
    -- An event the history never recorded goes with the outbox pruning, a stream retention after
    -- it was published.
    DELETE FROM room_events e USING history h WHERE e.event_id = h.event_id RETURNING 1
), rooms AS (
    DELETE FROM meetings m USING doomed d WHERE m.room_id = d.room_id RETURNING m.expires_at
)
SELECT (SELECT count(*) FROM rooms) AS rooms,
       (SELECT max(expires_at) FROM rooms) AS last_expiry,
       (SELECT count(*) FROM history) AS history,
       (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM keys) AS keys
"""


class PrunedRooms(NamedTuple):
    """What one batch deleted; `last_expiry`: where the next batch starts (None when none went)."""

    rooms: int
    history: int
    events: int
    keys: int
    last_expiry: datetime | None


async def prune_ended_rooms(conn: Connection, ended_seconds_ago: float, after: datetime, limit: int) -> PrunedRooms:
    """Delete up to `limit` rooms that expired (or were ended) more than `ended_seconds_ago` ago, no
    earlier than `after`, oldest first, with their history, events and Idempotency-Keys; their codes
    are retired."""
    row = await conn.fetchrow(_PRUNE_ENDED_ROOMS, ended_seconds_ago, after, limit)
    assert row is not None  # aggregates: always one row
    return PrunedRooms(row["rooms"], row["history"], row["events"], row["keys"], row["last_expiry"])
