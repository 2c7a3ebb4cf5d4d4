"""Removing a participant from a room: barred until the room ends (`removed_ids`, which the room
object carries for join.lua), with a `participant.removed` event. Decided and written in one
statement on the locked row, as the changes of common/db/changes.py are, with the same rules of who
may act and the same answer."""

from __future__ import annotations

from uuid import UUID

from common.db.changes import LOCKED_ROOM, MAY_NOT, OUTCOME, Changed, Refused, outcome
from common.db.pool import Connection
from common.db.room_rows import ROOM_COLUMNS
from common.rooms.model import MAX_REMOVED

# Anyone may be barred, present or not, but the host; barring someone barred already changes nothing.
_REMOVE_PARTICIPANT = f"""
WITH asked AS (
    SELECT $2::uuid AS caller, false AS host_only, $3::text AS participant
), room AS (
    {LOCKED_ROOM}
), verdict AS (
    SELECT CASE {MAY_NOT}
        WHEN asked.participant = room.host_id::text THEN 'host_not_removable'
        WHEN asked.participant = ANY (room.removed_ids) THEN 'nothing_to_change'
        WHEN cardinality(room.removed_ids) >= {MAX_REMOVED} THEN 'too_many_removed'
    END AS refusal
    FROM asked LEFT JOIN room ON true
), written AS (
    UPDATE meetings m SET removed_ids = m.removed_ids || (SELECT participant FROM asked), version = m.version + 1
    WHERE room_id = $1 AND (SELECT refusal FROM verdict) IS NULL
    RETURNING {ROOM_COLUMNS}, room_event_data(m, NULL, (SELECT participant FROM asked)) AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, data, traceparent)
    SELECT 'participant.removed', room_id, version, data, $4::text FROM written
    RETURNING id AS outbox_id, event_id, type, occurred_at, traceparent
)
{OUTCOME}"""


async def remove_participant(
    conn: Connection, room_id: str, caller: UUID, participant_id: str, traceparent: str | None = None
) -> Changed | Refused:
    """Bar `participant_id` from a live room `caller` hosts or co-hosts, until the room ends."""
    return outcome(await conn.fetchrow(_REMOVE_PARTICIPANT, room_id, caller, participant_id, traceparent))
