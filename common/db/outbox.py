"""The outbox (`room_events`): every room change's event, written in the change's own transaction,
published to the stream after commit and marked once it is there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from common.db.pool import Connection, deleted_count
from common.db.primaries import GENERATION, GENERATION_FENCE
from common.rooms.events import RoomEvent, decode_data


class Outboxed(NamedTuple):
    """An event and its outbox row, which is marked once the event is on the stream.

    `generation` counts the Redis primaries the events went to (migrations/0006): a mark made under
    an older generation than the current one is refused, the event being published again.
    """

    outbox_id: int
    event: RoomEvent
    generation: int


def event_from_row(row: asyncpg.Record) -> RoomEvent:
    """The event a row of `room_events` (or `room_history`, which has the same columns but for
    `traceparent`: a recorded event is history, not a trace to continue) describes."""
    return RoomEvent(
        type=row["type"],
        event_id=row["event_id"],
        room_id=row["room_id"],
        occurred_at=row["occurred_at"],
        version=row["version"],
        data=decode_data(row["data"]),
        traceparent=row.get("traceparent"),
    )


def outboxed_from_row(row: asyncpg.Record) -> Outboxed:
    return Outboxed(row["outbox_id"], event_from_row(row), row["generation"])


# A change made by the API publishes at once only if no earlier event of the room is still waiting in
# the outbox: the relay publishes in order, so per-room order holds either way. Selected by the
# statements that change a room, whose $1 is the room id (the outer query's snapshot does not see
# the statement's own event row).
PUBLISH_NOW = "NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = $1 AND e.published_at IS NULL)"


# A mark waits for a change of primaries being recorded to commit (the fence), then is refused if its
# generation is no longer the current one: the event may be missing there, and is published again.
_MARK_PUBLISHED = f"""
UPDATE room_events e SET published_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS m(id, generation)
WHERE e.id = m.id AND e.published_at IS NULL AND m.generation = {GENERATION_FENCE}
"""


async def mark_published(conn: Connection, marks: Sequence[tuple[int, int]]) -> None:
    """Mark the rows, given as (outbox id, generation), of events now on the stream."""
    await conn.execute(_MARK_PUBLISHED, [outbox_id for outbox_id, _ in marks], [gen for _, gen in marks])


def marks_of(changes: Sequence[Outboxed]) -> list[tuple[int, int]]:
    return [(change.outbox_id, change.generation) for change in changes]


_UNPUBLISHED = f"""
SELECT id AS outbox_id, event_id, type, room_id, version, occurred_at, data, traceparent,
       {GENERATION} AS generation
FROM room_events
WHERE published_at IS NULL AND occurred_at < now() - make_interval(secs => $1)
ORDER BY id
LIMIT $2
"""


async def unpublished_events(conn: Connection, grace_seconds: float, limit: int) -> list[Outboxed]:
    """Events not yet on the stream, oldest first, leaving the youngest to the API that wrote them."""
    return [outboxed_from_row(row) for row in await conn.fetch(_UNPUBLISHED, grace_seconds, limit)]


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
    return deleted_count(status)


class OutboxBacklog(NamedTuple):
    unpublished: int  # events written and not yet on the stream
    oldest_age_seconds: float  # how long the oldest of them has waited; 0 when there is none


async def outbox_backlog(conn: Connection) -> OutboxBacklog:
    """What the relay has yet to publish (the partial index of unpublished rows keeps this cheap)."""
    (row,) = await conn.fetch(  # aggregates: always one row
        "SELECT (SELECT count(*) FROM room_events WHERE published_at IS NULL) AS n, "
        # The oldest is the first by id (publication order), which the partial index finds at once.
        "coalesce((SELECT extract(epoch FROM now() - occurred_at) FROM room_events "
        "WHERE published_at IS NULL ORDER BY id LIMIT 1), 0) AS age"
    )
    return OutboxBacklog(int(row["n"]), float(row["age"]))
