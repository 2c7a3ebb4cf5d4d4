"""A room's recorded sessions (`room_sessions`, written by the worker's presence pass), in pages."""

from __future__ import annotations

from datetime import datetime

from common.db.pool import Connection
from common.rooms.sessions import RecordedSession

# A page of a room's sessions, newest first, before the keyset position $2 (from the newest when NULL).
# A room's sessions never overlap, so their starts are unique in it (the primary key): the start alone
# is the position. The primary key (meeting_id, started_at), scanned backward, serves both the condition
# and the order: a page costs the same wherever it starts.
ROOM_SESSIONS_PAGE = """
SELECT started_at, ended_at, peak_participants, distinct_participants, participant_ms, end_reason
FROM room_sessions
WHERE meeting_id = (SELECT id FROM meetings WHERE room_id = $1)
  AND started_at < coalesce($2::timestamptz, 'infinity')
ORDER BY started_at DESC
LIMIT $3
"""


async def room_sessions(
    conn: Connection, room_id: str, *, limit: int, before: datetime | None = None
) -> list[RecordedSession]:
    """Up to `limit` of a room's recorded sessions, newest first, started before `before`."""
    return [
        RecordedSession(
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            # Both ends are whole ms (Redis TIME): rounded, the float is what the events carry.
            duration_seconds=None
            if row["ended_at"] is None
            else round((row["ended_at"] - row["started_at"]).total_seconds(), 3),
            peak_participants=row["peak_participants"],
            distinct_participants=row["distinct_participants"],
            participant_seconds=row["participant_ms"] / 1000,
            end_reason=row["end_reason"],
        )
        for row in await conn.fetch(ROOM_SESSIONS_PAGE, room_id, before, limit)
    ]
