"""The recorded history of rooms (`room_history`) and the daily aggregates kept with it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from common.db.outbox import event_from_row
from common.db.pool import Connection
from common.rooms.events import RoomEvent, encode_data
from common.rooms.model import DailyStats

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
    RETURNING type, occurred_at, (occurred_at AT TIME ZONE 'UTC')::date AS day, data
), counts AS (  -- one row per event counted, on its day
    SELECT day, type, NULL::numeric AS participant_seconds FROM recorded WHERE type IN ('room.created', 'room.ended')
    UNION ALL
    -- A room starts once: announced by `room.started` if booked ahead, else when created (its start
    -- not after its creation; events from before rooms had a start have none, and started so). On the
    -- day of its start.
    SELECT (coalesce((data ->> 'startsAt')::timestamptz, occurred_at) AT TIME ZONE 'UTC')::date, 'started', NULL
    FROM recorded
    WHERE type = 'room.started'
       OR (type = 'room.created' AND coalesce((data ->> 'startsAt')::timestamptz, occurred_at) <= occurred_at)
    UNION ALL
    -- A session on the day it ended, with its participant-seconds (to the ms, as the event has them).
    SELECT (coalesce((data #>> '{session,endedAt}')::timestamptz, occurred_at) AT TIME ZONE 'UTC')::date,
           'session', coalesce((data #>> '{session,participantSeconds}')::numeric, 0)
    FROM recorded WHERE type = 'session.ended'
), counted AS (
    INSERT INTO daily_room_stats AS s (day, rooms_created, rooms_ended, rooms_started, sessions,
                                       participant_seconds)
    SELECT day, count(*) FILTER (WHERE type = 'room.created'), count(*) FILTER (WHERE type = 'room.ended'),
           count(*) FILTER (WHERE type = 'started'), count(*) FILTER (WHERE type = 'session'),
           coalesce(sum(participant_seconds), 0)
    FROM counts GROUP BY day ORDER BY day
    ON CONFLICT (day) DO UPDATE
        SET rooms_created = s.rooms_created + excluded.rooms_created,
            rooms_ended = s.rooms_ended + excluded.rooms_ended,
            rooms_started = s.rooms_started + excluded.rooms_started,
            sessions = s.sessions + excluded.sessions,
            participant_seconds = s.participant_seconds + excluded.participant_seconds
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


# A page of a room's history, oldest first, after the keyset position ($2, $3) (from the start when
# NULL). (occurred_at, version) is unique within a room: every event is written in the transaction that
# bumps the room's version, under its row lock. room_history_room_id_idx (room_id, occurred_at, version)
# serves both the condition and the order: a page costs the same wherever it starts.
ROOM_HISTORY_PAGE = """
SELECT event_id, type, room_id, version, occurred_at, data
FROM room_history
WHERE room_id = $1
  AND (occurred_at, version) > (coalesce($2::timestamptz, '-infinity'), coalesce($3::int, 0))
ORDER BY occurred_at, version
LIMIT $4
"""


async def room_history(
    conn: Connection, room_id: str, *, limit: int, after: tuple[datetime, int] | None = None
) -> list[RoomEvent]:
    """Up to `limit` of a room's recorded events, oldest first, after the position (occurred_at, version)."""
    occurred_at, version = after if after else (None, None)
    return [event_from_row(row) for row in await conn.fetch(ROOM_HISTORY_PAGE, room_id, occurred_at, version, limit)]


_DAILY_STATS = """
SELECT d::date AS day,
       coalesce(s.rooms_created, 0) AS rooms_created,
       coalesce(s.rooms_ended, 0) AS rooms_ended,
       coalesce(s.rooms_started, 0) AS rooms_started,
       coalesce(s.sessions, 0) AS sessions,
       coalesce(s.participant_seconds, 0) AS participant_seconds,
       (SELECT count(*) FROM daily_room_hosts h WHERE h.day = d::date) AS distinct_hosts
FROM generate_series($1::text::date, $2::text::date, interval '1 day') AS d
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
            rooms_started=row["rooms_started"],
            sessions=row["sessions"],
            participant_seconds=float(row["participant_seconds"]),  # numeric: a Decimal
        )
        # As text: asyncpg sends the first and last days of the calendar as -infinity and infinity,
        # from or to which the series would never end.
        for row in await conn.fetch(_DAILY_STATS, first.isoformat(), last.isoformat())
    ]
