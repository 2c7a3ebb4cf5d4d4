"""The outbox (`room_events`): every room change's event, written in the change's own transaction,
published to the stream after commit and marked once it is there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from common.db.pool import Connection, deleted_count
from common.db.publication import GENERATION, MARK_PUBLISHED
from common.rooms.events import RoomEvent, decode_data


class Outboxed(NamedTuple):
    """An event and its outbox row, which is marked once the event is on the stream.

    `generation` counts the Redis primaries the events went to: a mark made under an older generation
    than the current one is refused, the event being published again (common/db/publication.py).
    `data` is the row's `data` as the database made it (room_event_data): what is published and
    cached, as it is; `event.data` holds the fields of it this code reads.
    """

    outbox_id: int
    event: RoomEvent
    generation: int
    data: str


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
    return Outboxed(row["outbox_id"], event_from_row(row), row["generation"], row["data"])


async def mark_published(conn: Connection, marks: Sequence[tuple[int, int]]) -> None:
    """Mark the rows, given as (outbox id, generation), of events now on the stream; a mark made
    under an older generation than the current one is refused (the fence: common/db/publication.py)."""
    await conn.execute(MARK_PUBLISHED, [outbox_id for outbox_id, _ in marks], [gen for _, gen in marks])


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
