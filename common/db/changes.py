"""The statements that change or end a room at a caller's request (PATCH, DELETE).

Each decides and writes in one statement, on the room's row locked, and answers either the change
made with its outbox event or the one reason it made none. Who may change a room is written here
once (`MAY_NOT`); the service only maps a reason to its error.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID

import asyncpg
from msgspec import UNSET, UnsetType

from common.db.outbox import Outboxed, outboxed_from_row
from common.db.pool import Connection
from common.db.publication import GENERATION, PUBLISH_NOW
from common.db.room_rows import LIVE, ROOM_COLUMNS, room_from_row
from common.rooms.model import Room


class Changed(NamedTuple):
    """A room after a change, the change's outbox event, and whether the API may publish it at once
    (`PUBLISH_NOW`: no earlier event of the room waits in the outbox)."""

    room: Room
    change: Outboxed
    publish_now: bool


class RoomChange(NamedTuple):
    """What a PATCH asks of a room. A field left None (the metadata: UNSET, since None clears it) stays
    as it is. `metadata`: compact JSON."""

    max_participants: int | None = None
    metadata: str | UnsetType | None = UNSET
    host_id: UUID | None = None
    cohost_ids: tuple[UUID, ...] | None = None
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    empty_timeout_seconds: int | None = None
    unused_timeout_seconds: int | None = None


class ScheduleBounds(NamedTuple):
    """The bounds a moved start or end is held to, in seconds (common/service/checks.py)."""

    longest: float  # from the start to the end
    furthest_ahead: float  # from now to the start
    past_skew: float  # how far in the past a new start may be (the client's clock may be behind)
    end_notice: float  # how soon a new end may come at the earliest


class Refusal(StrEnum):
    """Why a change or an end wrote nothing, as its statement decides it on the locked row."""

    NOT_FOUND = "not_found"
    HOST_ONLY = "host_only"  # the change names the hosts, and the caller is a co-host or nobody
    NOT_ALLOWED = "not_allowed"  # the caller is neither the host nor a co-host
    ENDED = "ended"
    COHOSTS_NAME_HOST = "cohosts_name_host"
    ROOM_STARTED = "room_started"  # a new start asked of a room that has started
    # A start or an end out of bounds (common/service/checks.py names each bound the same).
    START_IN_PAST = "start_in_past"
    START_TOO_FAR = "start_too_far"
    END_TOO_SOON = "end_too_soon"
    ENDS_BEFORE_START = "ends_before_start"  # the end asked, or kept, is not after the start
    TOO_LONG = "too_long"  # from its start to its end, longer than a room may last
    HOST_NOT_REMOVABLE = "host_not_removable"  # a removal naming the room's host
    TOO_MANY_REMOVED = "too_many_removed"  # a removal past MAX_REMOVED
    NOTHING_TO_CHANGE = "nothing_to_change"  # everything asked is already so


class Refused(NamedTuple):
    """A change or an end not made, and the room as it is (None if there is no such room)."""

    reason: Refusal
    room: Room | None


# The room a change or an end is decided on, locked until the statement ends: nothing changes it
# between the decision and the write, so the reason given for a refusal is the true one.
LOCKED_ROOM = f"SELECT {ROOM_COLUMNS}, {LIVE} AS live, started FROM meetings WHERE room_id = $1 FOR UPDATE"

# Who may change a room, written once: its host anything; a co-host anything but who hosts it
# (`asked.host_only`); nobody a room that has ended. The first reason that applies, in this order.
MAY_NOT = """
        WHEN room.id IS NULL THEN 'not_found'
        WHEN asked.caller <> room.host_id AND asked.host_only THEN 'host_only'
        WHEN asked.caller <> room.host_id AND NOT asked.caller = ANY (room.cohost_ids) THEN 'not_allowed'
        WHEN NOT room.live THEN 'ended'"""

# What both statements answer, in one row: the refusal (NULL: written), the room as it is now (as
# written, else as it was), and, when written, its outbox event.
#
# PUBLISH_NOW reads the outbox in the statement's snapshot, taken before it waited for the row: a
# change committed meanwhile has an event it cannot see, perhaps not yet published. Such a change
# moved the row past the snapshot's version, so then the relay publishes, in order.
OUTCOME = f"""
SELECT verdict.refusal, shown.*, event.*,
       {PUBLISH_NOW} AND room.version = (SELECT version FROM meetings WHERE room_id = $1) AS publish_now,
       {GENERATION} AS generation
FROM verdict
LEFT JOIN room ON true
LEFT JOIN (
    SELECT * FROM written
    UNION ALL
    SELECT {ROOM_COLUMNS}, NULL FROM room WHERE NOT EXISTS (SELECT FROM written)
) AS shown ON true
LEFT JOIN event ON true
"""

# A PATCH: one statement, one `room.updated` event for all of it, and none when nothing would change.
_UPDATE_ROOM = f"""
WITH asked AS (
    SELECT $2::uuid AS caller,
           $3::int AS max_participants,  -- NULL: as it is
           $4::text::jsonb AS metadata,  -- NULL: as it is; the JSON null clears it
           $5::uuid AS host_id,  -- NULL: as it is; else the room is handed over
           $6::uuid[] AS cohost_ids,  -- NULL: as they are
           $8::timestamptz AS starts_at,  -- NULL: as it is
           $9::timestamptz AS expires_at,  -- NULL: as it is
           make_interval(secs => $10::float8) AS longest,  -- the bounds: ScheduleBounds
           make_interval(secs => $11::float8) AS furthest_ahead,
           make_interval(secs => $12::float8) AS past_skew,
           make_interval(secs => $13::float8) AS end_notice,
           $14::int AS empty_timeout_seconds,  -- NULL: as it is
           $15::int AS unused_timeout_seconds,  -- NULL: as it is
           $5::uuid IS NOT NULL OR $6::uuid[] IS NOT NULL AS host_only
), room AS (
    {LOCKED_ROOM}
), proposed AS (  -- the room as the change would leave it
    SELECT coalesce(asked.max_participants, room.max_participants) AS max_participants,
           CASE WHEN asked.metadata IS NULL THEN room.metadata ELSE nullif(asked.metadata, 'null') END AS metadata,
           coalesce(asked.host_id, room.host_id) AS host_id,
           -- The host is never a co-host: a new host leaves the co-hosts.
           array_remove(coalesce(asked.cohost_ids, room.cohost_ids), coalesce(asked.host_id, room.host_id))
               AS cohost_ids,
           coalesce(asked.starts_at, room.starts_at) AS starts_at,
           coalesce(asked.expires_at, room.expires_at) AS expires_at,
           coalesce(asked.empty_timeout_seconds, room.empty_timeout_seconds) AS empty_timeout_seconds,
           coalesce(asked.unused_timeout_seconds, room.unused_timeout_seconds) AS unused_timeout_seconds
    FROM asked, room
), verdict AS (
    SELECT CASE {MAY_NOT}
        WHEN asked.cohost_ids @> ARRAY[proposed.host_id] THEN 'cohosts_name_host'
        -- The start moves only while it is ahead: once the room has opened, it has happened. A
        -- start or an end sent as the room has it is no move, and is held to no bound of "now".
        -- `started` too: now() is the statement's start, and a statement that waited for the start job's
        -- lock finds the room started (and announced) though its own clock read a moment before.
        WHEN proposed.starts_at <> room.starts_at AND (room.started OR room.starts_at <= now()) THEN 'room_started'
        WHEN proposed.starts_at <> room.starts_at AND proposed.starts_at < now() - asked.past_skew
            THEN 'start_in_past'
        WHEN proposed.starts_at <> room.starts_at AND proposed.starts_at > now() + asked.furthest_ahead
            THEN 'start_too_far'
        WHEN proposed.expires_at <> room.expires_at AND proposed.expires_at < now() + asked.end_notice
            THEN 'end_too_soon'
        -- Only a moved start or end is held to them: a room kept as it is (say, longer than a bound
        -- lowered since) may still change its limit.
        WHEN (proposed.starts_at, proposed.expires_at) <> (room.starts_at, room.expires_at)
             AND proposed.expires_at <= proposed.starts_at THEN 'ends_before_start'
        WHEN (proposed.starts_at, proposed.expires_at) <> (room.starts_at, room.expires_at)
             AND proposed.expires_at - proposed.starts_at > asked.longest THEN 'too_long'
        WHEN (proposed.max_participants, proposed.metadata, proposed.host_id, proposed.cohost_ids,
              proposed.starts_at, proposed.expires_at, proposed.empty_timeout_seconds,
              proposed.unused_timeout_seconds)
             IS NOT DISTINCT FROM (room.max_participants, room.metadata, room.host_id, room.cohost_ids,
                                   room.starts_at, room.expires_at, room.empty_timeout_seconds,
                                   room.unused_timeout_seconds)
            THEN 'nothing_to_change'
    END AS refusal
    FROM asked LEFT JOIN room ON true LEFT JOIN proposed ON true
), written AS (
    UPDATE meetings m
    SET (max_participants, metadata, host_id, cohost_ids, starts_at, expires_at, empty_timeout_seconds,
         unused_timeout_seconds) =
            (SELECT max_participants, metadata, host_id, cohost_ids, starts_at, expires_at, empty_timeout_seconds,
                    unused_timeout_seconds FROM proposed),
        version = m.version + 1
    WHERE room_id = $1 AND (SELECT refusal FROM verdict) IS NULL
    RETURNING {ROOM_COLUMNS}, room_event_data(m) AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, data, traceparent)
    SELECT 'room.updated', room_id, version, data, $7::text FROM written
    RETURNING id AS outbox_id, event_id, type, occurred_at, traceparent
)
{OUTCOME}"""


async def update_room(
    conn: Connection,
    room_id: str,
    caller: UUID,
    change: RoomChange,
    *,
    bounds: ScheduleBounds,
    traceparent: str | None = None,
) -> Changed | Refused:
    """Make `change` to a live room `caller` may change so, unless it would change nothing, or move
    its start or end out of `bounds`. `traceparent`: of the request, for the event (as for every
    statement below that writes one)."""
    metadata = change.metadata
    row = await conn.fetchrow(
        _UPDATE_ROOM,
        room_id,
        caller,
        change.max_participants,
        None if metadata is UNSET else "null" if metadata is None else metadata,
        change.host_id,
        None if change.cohost_ids is None else list(change.cohost_ids),
        traceparent,
        change.starts_at,
        change.expires_at,
        *map(float, bounds),
        change.empty_timeout_seconds,
        change.unused_timeout_seconds,
    )
    return outcome(row)


# A DELETE: the room ends, with its `room.ended` event.
_END_ROOM = f"""
WITH asked AS (
    SELECT $2::uuid AS caller, false AS host_only
), room AS (
    {LOCKED_ROOM}
), verdict AS (
    SELECT CASE {MAY_NOT}
    END AS refusal
    FROM asked LEFT JOIN room ON true
), written AS (
    UPDATE meetings m SET is_active = false, version = m.version + 1
    WHERE room_id = $1 AND (SELECT refusal FROM verdict) IS NULL
    RETURNING {ROOM_COLUMNS}, room_event_data(m, 'deleted') AS data
), event AS (
    INSERT INTO room_events (type, room_id, version, data, traceparent)
    SELECT 'room.ended', room_id, version, data, $3::text FROM written
    RETURNING id AS outbox_id, event_id, type, occurred_at, traceparent
)
{OUTCOME}"""


async def end_room(conn: Connection, room_id: str, caller: UUID, traceparent: str | None = None) -> Changed | Refused:
    """End a live room `caller` hosts or co-hosts (soft: the row stays)."""
    return outcome(await conn.fetchrow(_END_ROOM, room_id, caller, traceparent))


def outcome(row: asyncpg.Record | None) -> Changed | Refused:
    if row is None:
        raise RuntimeError("a change statement answered no row")  # its verdict always has one
    if row["refusal"] is None:
        return Changed(room_from_row(row), outboxed_from_row(row), row["publish_now"])
    return Refused(Refusal(row["refusal"]), None if row["id"] is None else room_from_row(row))
