"""The statements of the worker's presence pass (worker/jobs/presence.py): which rooms to check, and
recording what Redis said of them: sessions (`room_sessions`, with `session.started` and
`session.ended` in the outbox) and the rooms it ended as empty or unused (`room.ended`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from common.db.pool import Connection


class CheckedRoom(NamedTuple):
    """A room to check, and the newest of its sessions that the database has."""

    meeting_id: UUID
    room_id: str
    start: datetime
    empty_timeout_seconds: int
    unused_timeout_seconds: int
    live: bool  # False: ended, visited once more for what Redis kept of its sessions
    newest_started: datetime | None
    newest_ended: datetime | None
    newest_seen: datetime | None


class SessionRow(NamedTuple):
    """A session as Redis reported it: ended (`ended_at` and `reason` set) or in progress."""

    meeting_id: UUID
    started_at: datetime
    ended_at: datetime | None
    peak: int
    distinct: int
    participant_ms: int
    reason: str | None
    seen_at: datetime


class AutoEnd(NamedTuple):
    meeting_id: UUID
    reason: str  # empty | unused
    at: datetime


_NEWEST_SESSION = """
LEFT JOIN LATERAL (
    SELECT started_at, ended_at, seen_at FROM room_sessions s
    WHERE s.meeting_id = m.id ORDER BY started_at DESC LIMIT 1
) newest ON true
"""
_COLUMNS = """m.id, m.room_id, coalesce(m.starts_at, m.created_at) AS start, m.empty_timeout_seconds,
       m.unused_timeout_seconds, m.is_active AS live,
       newest.started_at AS newest_started, newest.ended_at AS newest_ended, newest.seen_at AS newest_seen"""

# Rooms by code, whatever their state: those whose sessions Redis keeps (found by a SCAN).
_BY_ID = f"""
SELECT {_COLUMNS}
FROM meetings m {_NEWEST_SESSION}
WHERE m.room_id = ANY($1::text[])
"""

# Live rooms that have started and that the database says may have news, wherever Redis is: in session
# as far as it knows (its figures move; Redis may have lost it), or past the deadline of the timeout
# presence.lua would judge it by (empty since its last session's end, else unused since its start; the
# same rule). Rooms with ended sessions come from room_sessions (few), the others by an anti-join, so
# no room is looked up one by one. A room with news that the database does not know of (a session begun
# or ended since the last pass) has its session key in Redis: the pass finds it there.
_DUE = f"""
WITH newest AS (
    SELECT DISTINCT ON (s.meeting_id) s.meeting_id, s.started_at, s.ended_at, s.seen_at
    FROM room_sessions s
    WHERE s.meeting_id IN (SELECT id FROM meetings WHERE is_active AND started)
    ORDER BY s.meeting_id, s.started_at DESC
)
SELECT {_COLUMNS}
FROM meetings m LEFT JOIN newest ON newest.meeting_id = m.id
WHERE m.is_active AND m.started AND (
    (newest.started_at IS NOT NULL AND newest.ended_at IS NULL)
    OR CASE WHEN newest.ended_at > coalesce(m.starts_at, m.created_at)
        THEN m.empty_timeout_seconds > 0
             AND newest.ended_at + make_interval(secs => m.empty_timeout_seconds) <= now()
        ELSE m.unused_timeout_seconds > 0
             AND coalesce(m.starts_at, m.created_at) + make_interval(secs => m.unused_timeout_seconds) <= now()
    END
)
"""

# Rooms whose end was published after $1: the end closed their last session in Redis. A room ended
# twice over (its end published again) is one room.
_ENDED_SINCE = f"""
SELECT {_COLUMNS}
FROM meetings m {_NEWEST_SESSION}
WHERE m.room_id IN (
    SELECT room_id FROM room_events WHERE published_at > $1 AND type = 'room.ended'
) AND NOT m.is_active
"""


async def rooms_by_id(conn: Connection, room_ids: Sequence[str]) -> list[CheckedRoom]:
    return [CheckedRoom(*row.values()) for row in await conn.fetch(_BY_ID, list(room_ids))]


async def due_rooms(conn: Connection) -> list[CheckedRoom]:
    return [CheckedRoom(*row.values()) for row in await conn.fetch(_DUE)]


async def ended_rooms_since(conn: Connection, since: datetime) -> list[CheckedRoom]:
    return [CheckedRoom(*row.values()) for row in await conn.fetch(_ENDED_SINCE, since)]


async def live_rooms(conn: Connection) -> int:
    """Live rooms that have started."""
    return int(await conn.fetchval("SELECT count(*) FROM meetings WHERE is_active AND started"))


async def progress(conn: Connection) -> tuple[datetime, datetime]:
    """Up to when ended rooms were visited, and the database's clock now."""
    row = await conn.fetchrow("SELECT ended_published, now() AS now FROM presence_progress")
    assert row is not None  # migrations/0017_room_sessions.sql inserts the one row
    return row["ended_published"], row["now"]


async def advance(conn: Connection, through: datetime) -> None:
    await conn.execute("UPDATE presence_progress SET ended_published = greatest(ended_published, $1)", through)


# Each event of a session: its room object (as every event's data) with the session under `session`;
# it occurred when the session started or ended. Not a change of the room: the version is the room's.
_SESSION_EVENTS = """
INSERT INTO room_events (type, room_id, version, occurred_at, data)
SELECT e.type, m.room_id, m.version,
       CASE e.type WHEN 'session.started' THEN w.started_at ELSE w.ended_at END,
       room_event_data(m)
       || jsonb_build_object('session', session_event_data(w.session, e.type = 'session.ended'))
FROM written w
JOIN meetings m ON m.id = w.meeting_id
CROSS JOIN LATERAL (VALUES ('session.started'), ('session.ended')) AS e (type)
WHERE (e.type = 'session.started' AND w.inserted) OR (e.type = 'session.ended' AND w.ended_at IS NOT NULL)
ORDER BY w.meeting_id, w.started_at, e.type DESC  -- in the order they happened: started, then ended
"""

# Sessions as Redis reports them. A session recorded as ended stays as it is (the pass that recorded it
# may be repeated); one in progress takes the newer figures when its peak or distinct participants
# moved, or once a minute (its participant-ms move all the time: writing each pass's would cost every
# open session a row version every period). The events: `session.started` for a session seen for the
# first time, `session.ended` for one that ends here.
_RECORD = f"""
WITH written AS (
    INSERT INTO room_sessions AS r (meeting_id, started_at, ended_at, peak_participants,
                                    distinct_participants, participant_ms, end_reason, seen_at)
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::int[],
                         $6::bigint[], $7::text[], $8::timestamptz[])
    ON CONFLICT (meeting_id, started_at) DO UPDATE SET
        ended_at = excluded.ended_at, peak_participants = excluded.peak_participants,
        distinct_participants = excluded.distinct_participants, participant_ms = excluded.participant_ms,
        end_reason = excluded.end_reason, seen_at = excluded.seen_at
    WHERE r.ended_at IS NULL AND (
        excluded.ended_at IS NOT NULL
        OR (excluded.peak_participants, excluded.distinct_participants)
           <> (r.peak_participants, r.distinct_participants)
        OR excluded.seen_at >= r.seen_at + interval '60 seconds'
    )
    RETURNING r.meeting_id, r.started_at, r.ended_at, r AS session, r.xmax = 0 AS inserted
)
{_SESSION_EVENTS}
"""

# Sessions in progress whose room's Redis no longer has them (it restarted without its data): they
# end, `lost`, at the last moment the pass saw them, with the figures it saw then.
_LOSE = f"""
WITH written AS (
    UPDATE room_sessions r SET ended_at = greatest(r.seen_at, r.started_at), end_reason = 'lost'
    FROM unnest($1::uuid[], $2::timestamptz[]) AS lost (meeting_id, started_at)
    WHERE r.meeting_id = lost.meeting_id AND r.started_at = lost.started_at AND r.ended_at IS NULL
    RETURNING r.meeting_id, r.started_at, r.ended_at, r AS session, false AS inserted
)
{_SESSION_EVENTS}
"""

# Rooms the pass ended in Redis, empty or unused: ended here too, at that moment, with `room.ended`.
_AUTO_END = """
WITH ended AS (
    UPDATE meetings m SET is_active = false, version = m.version + 1
    FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS decided (id, reason, at)
    WHERE m.id = decided.id AND m.is_active
    RETURNING m.room_id, m.version, decided.at, room_event_data(m, decided.reason) AS data
)
INSERT INTO room_events (type, room_id, version, occurred_at, data)
SELECT 'room.ended', room_id, version, at, data FROM ended
RETURNING room_id, data ->> 'reason' AS reason
"""


async def record(
    conn: Connection, sessions: Sequence[SessionRow], lost: Sequence[tuple[UUID, datetime]], ends: Sequence[AutoEnd]
) -> list[tuple[str, str]]:
    """Record a page's sessions, lost sessions and ends, in one transaction; returns the rooms ended
    here (not by another end meanwhile), with why. A lost session ends before the sessions that came
    after it begin, so their events are written in the order they happened."""
    async with conn.transaction():
        if lost:
            await conn.execute(_LOSE, [room for room, _ in lost], [started for _, started in lost])
        if sessions:
            await conn.execute(_RECORD, *(list(column) for column in zip(*sessions, strict=True)))
        if not ends:
            return []
        rows = await conn.fetch(_AUTO_END, *(list(column) for column in zip(*ends, strict=True)))
        return [(row["room_id"], row["reason"]) for row in rows]
