"""The statements of a room's life that no caller asks for: the worker's. A booked room starts at its
`starts_at` (`room.started`), and every room ends at its `expires_at` (`room.ended`, reason `expired`).

Each ends or starts a batch of rooms in one statement, with their outbox events. SKIP LOCKED lets
several workers run them at once without waiting on each other, or on a PATCH holding a room.
"""

from __future__ import annotations

from typing import NamedTuple

import asyncpg

from common.db.outbox import Outboxed, outboxed_from_row
from common.db.pool import Connection
from common.db.publication import GENERATION


class JobEvent(NamedTuple):
    """An event a job wrote, and whether the job may publish it at once: no earlier event of its
    room waits in the outbox, else the relay publishes them in order (common/db/publication.py)."""

    change: Outboxed
    publish_now: bool


# What both statements answer for each event. `publish_now` as in common/db/changes.py: in the
# statement's snapshot no earlier event of the room waits unpublished, and no change of the room
# committed between the snapshot and the row lock (its version then moved on by more than this one).
_RETURNING = f"""
RETURNING id AS outbox_id, event_id, type, room_id, version, occurred_at, data, traceparent,
          {GENERATION} AS generation,
          NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = room_events.room_id AND e.published_at IS NULL)
          AND version = (SELECT s.version + 1 FROM meetings s WHERE s.room_id = room_events.room_id) AS publish_now
"""

# Rooms past their lifetime end, whether or not they started.
_EXPIRE_ROOMS = f"""
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
INSERT INTO room_events (type, room_id, version, data, traceparent)
SELECT 'room.ended', room_id, version, data, $2::text FROM ended
{_RETURNING}"""

# Booked rooms whose start has come (meetings_waiting_start_idx holds just those waiting). A room
# whose end has come too never started: the expiry ends it.
_START_ROOMS = f"""
WITH started AS (
    UPDATE meetings m SET started = true, version = m.version + 1
    WHERE m.id IN (
        SELECT id FROM meetings
        WHERE is_active AND NOT started AND starts_at <= now() AND expires_at > now()
        ORDER BY starts_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING m.room_id, m.version, room_event_data(m) AS data
)
INSERT INTO room_events (type, room_id, version, data, traceparent)
SELECT 'room.started', room_id, version, data, $2::text FROM started
{_RETURNING}"""


async def expire_rooms(conn: Connection, limit: int, traceparent: str | None = None) -> list[JobEvent]:
    """End up to `limit` rooms whose lifetime is over; their `room.ended` events, in the outbox, with
    the `traceparent` of the job that ended them."""
    return _job_events(await conn.fetch(_EXPIRE_ROOMS, limit, traceparent))


async def start_rooms(conn: Connection, limit: int, traceparent: str | None = None) -> list[JobEvent]:
    """Start up to `limit` booked rooms whose start has come, earliest first; their `room.started`
    events, in the outbox."""
    return _job_events(await conn.fetch(_START_ROOMS, limit, traceparent))


def _job_events(rows: list[asyncpg.Record]) -> list[JobEvent]:
    return [JobEvent(outboxed_from_row(row), row["publish_now"]) for row in rows]
