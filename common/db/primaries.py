"""The Redis primaries the room events were last published to (`redis_primaries`, migrations/0006)."""

from __future__ import annotations

from common.db.pool import Connection, deleted_count

_SEEN = "SELECT run_ids, seen_at FROM redis_primaries FOR UPDATE"

# Events published since a while before the old primaries were last seen may be missing on the new
# ones: their rows count as unpublished again, for the relay to publish in order.
_REPUBLISH = """
UPDATE room_events SET published_at = NULL
WHERE published_at >= $1::timestamptz - make_interval(secs => $2)
"""


async def note_primaries(conn: Connection, run_ids: str, replay_seconds: float) -> int:
    """Record the primaries seen now (their run ids). If they are not the ones seen last time, start a
    new generation and make the events published since `replay_seconds` before then unpublished
    again; returns how many (0 when nothing changed). Run it in the relay's transaction."""
    seen = await conn.fetchrow(_SEEN)
    if seen is None:  # the first look: nothing to compare with
        await conn.execute("INSERT INTO redis_primaries (run_ids, generation, seen_at) VALUES ($1, 0, now())", run_ids)
        return 0
    if seen["run_ids"] == run_ids:
        await conn.execute("UPDATE redis_primaries SET seen_at = now()")
        return 0
    await conn.execute("UPDATE redis_primaries SET run_ids = $1, generation = generation + 1, seen_at = now()", run_ids)
    status = await conn.execute(_REPUBLISH, seen["seen_at"], float(replay_seconds))
    return deleted_count(status)
