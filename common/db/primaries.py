"""The Redis primaries the room events were last published to (`redis_primaries`, migrations/0006).

When they change, the events published in a window before the change may be missing on the new
primaries: the relay makes them unpublished again, in batches, and publishes them once more. The
generation counts the changes; a mark made under an older generation is refused (common/db/outbox.py).
"""

from __future__ import annotations

from typing import NamedTuple

from common.db.pool import Connection, deleted_count

# The current generation, for statements that publish: 0 until the relay has first looked.
GENERATION = "coalesce((SELECT generation FROM redis_primaries), 0)"
# The same, for a mark: it waits while the relay records a change (which holds the row FOR UPDATE),
# then reads the row as that change left it. KEY SHARE, as a foreign-key check takes: marks from
# many processes at once do not wait for one another.
GENERATION_FENCE = "coalesce((SELECT generation FROM redis_primaries FOR KEY SHARE), 0)"

_SEEN = "SELECT identity, replay_from IS NOT NULL AS replaying FROM redis_primaries FOR UPDATE"

_CHANGED = """
UPDATE redis_primaries
SET identity = $1, generation = generation + 1, seen_at = now(),
    replay_from = least(replay_from, seen_at - make_interval(secs => $2)),
    replay_to = now()
"""

# The oldest batch of the window, made unpublished again; a short statement whatever the window's size.
_REPLAY_BATCH = """
UPDATE room_events SET published_at = NULL
WHERE id IN (
    SELECT e.id FROM room_events e, redis_primaries p
    WHERE e.published_at >= p.replay_from AND e.published_at < p.replay_to
    ORDER BY e.id
    LIMIT $1
)
"""


class Seen(NamedTuple):
    changed: bool  # the primaries are not those seen last time
    replaying: bool  # events of a replay window are still to be made unpublished again


async def note_primaries(conn: Connection, identity: str, replay_seconds: float) -> Seen:
    """Record the primaries seen now. When they changed, the window from `replay_seconds` before they
    were last seen until now is due for publishing again (see `unmark_replay_batch`). Run it in the
    relay's transaction: its row lock orders it with the marks' fence."""
    seen = await conn.fetchrow(_SEEN)
    if seen is None:  # the first look: nothing to compare with
        await conn.execute(
            "INSERT INTO redis_primaries (identity, generation, seen_at) VALUES ($1, 0, now())", identity
        )
        return Seen(changed=False, replaying=False)
    if seen["identity"] == identity:
        await conn.execute("UPDATE redis_primaries SET seen_at = now()")
        return Seen(changed=False, replaying=seen["replaying"])
    # least() ignores a NULL replay_from: a change during an unfinished replay widens its window.
    await conn.execute(_CHANGED, identity, float(replay_seconds))
    return Seen(changed=True, replaying=True)


async def unmark_replay_batch(conn: Connection, limit: int) -> int:
    """Make up to `limit` published events of the replay window unpublished again, oldest first;
    close the window once it holds no more. Returns how many."""
    unmarked = deleted_count(await conn.execute(_REPLAY_BATCH, limit))
    if unmarked < limit:
        await conn.execute("UPDATE redis_primaries SET replay_from = NULL, replay_to = NULL")
    return unmarked
