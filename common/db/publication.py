"""How a room event reaches the stream exactly when it must: publish, fence, replay. Every statement of
the protocol is here; common/db/outbox.py and common/db/rooms.py use them.

Tables: the outbox `room_events` (migrations/0002) and the primaries' row `redis_primaries` (0006).

1. **Write.** A room change and its event's row (`published_at` NULL) commit in one transaction. The
   statement that writes them also reads `GENERATION`, the primaries the event will be published to,
   and `PUBLISH_NOW`: whether the API may publish it itself.
2. **Publish after commit, then mark.** The API publishes an event (stream entry and cache effect)
   only when no earlier event of its room waits in the outbox; else the relay publishes it, with the
   waiting ones, in id order. Once the event is on the stream its row is marked (`MARK_PUBLISHED`):
   `published_at = now()`, the start of the mark's transaction.
3. **The fence.** A mark carries the generation the event was published under and is refused when
   that is no longer the current one. It reads the generation under `FOR KEY SHARE`, held until it
   commits; the relay takes the row `FOR UPDATE` to record a change. So a mark and a change of
   primaries are ordered: the mark commits before the change takes the lock (and was accepted under
   the old generation), or it waits for the change to commit and then reads the new generation.
4. **The generation.** The relay (one at a time: an advisory lock) compares the primaries it
   publishes to with those it saw last (`note_primaries`). When they differ, the generation goes up
   and every event published from `replay_seconds` before they were last seen until the change is due
   again: the replay window [`replay_from`, `replay_to`).
5. **The replay.** In the relay's runs, batch by batch (`unmark_replay_batch`), the window's rows are
   made unpublished again, oldest `published_at` first; the relay publishes them once more, in id
   order, and marks them with a `published_at` after the window.

Invariants, and why they hold:

- **Every mark accepted under the old generation lies in the window: `published_at < replay_to`.**
  Such a mark held its KEY SHARE lock until it committed, and the relay's FOR UPDATE waited for that
  commit; its `published_at` is its transaction's start, before its commit. `replay_to` is
  `clock_timestamp()` read once the relay holds the row, so after that commit. (Not the relay's
  `now()`: its transaction began before the lock, and a mark could begin and commit in between.) All
  of these are readings of the one database server's clock. Its start, `replay_from`, holds such a
  mark when the relay saw the old primaries at most `replay_seconds` after the event was published
  (docs/events.md, "What survives a Redis failure").
- **A mark accepted under the new generation was published to the new primaries**: the publish read
  the generation after the change committed. Such a mark may still fall in the window (it began
  before the change and waited at the fence); its event is then published once more: a copy, which
  consumers drop by `eventId`.
- **Per room, `published_at` never decreases with id**: the API publishes only after the room's
  earlier events are marked, the relay in id order, and one statement's marks share one `now()`. A
  replay batch takes every row up to its last `published_at`, ties included, so when it makes an
  event unpublished, the earlier events of its room in the window are unpublished in the same batch
  or before it, and the relay, in id order, publishes them first.
- **A batch costs the same whatever the window's size**: it reads the index of published rows by
  `published_at` (migrations/0002) from the window's start, which moves past each batch (a keyset
  walk: the index entries of the rows already made unpublished lie behind it, never read again).
  Its size is the limit plus the rows marked in the same statement as its last one.
"""

from __future__ import annotations

from typing import NamedTuple

from common.db.pool import Connection

# The current generation, for the statements that write an event: 0 until the relay has first looked.
GENERATION = "coalesce((SELECT generation FROM redis_primaries), 0)"
# The same, for a mark: the fence (3. above). KEY SHARE, as a foreign-key check takes: marks from
# many processes at once do not wait for one another, only for a change being recorded.
GENERATION_FENCE = "coalesce((SELECT generation FROM redis_primaries FOR KEY SHARE), 0)"

# Whether the API publishes the event at once: no earlier event of the room waits in the outbox (the
# relay publishes in id order, so per-room order holds either way). For the statements that change a
# room, whose $1 is the room id (the outer query's snapshot does not see the statement's own event row).
# It reads the statement's snapshot: a statement that waited for the room's row lock must also check
# that no change committed meanwhile (common/db/changes.py compares the locked row's version).
PUBLISH_NOW = "NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = $1 AND e.published_at IS NULL)"

# Marks rows, given as parallel arrays of outbox ids and the generations they were published under.
MARK_PUBLISHED = f"""
UPDATE room_events e SET published_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS m(id, generation)
WHERE e.id = m.id AND e.published_at IS NULL AND m.generation = {GENERATION_FENCE}
"""

_SEEN = "SELECT identity, replay_from IS NOT NULL AS replaying FROM redis_primaries FOR UPDATE"

# Run once the row is held (after _SEEN): clock_timestamp(), not now(), ends the window (invariant 1).
# least() ignores a NULL replay_from: a change during an unfinished replay widens its window.
_CHANGED = """
UPDATE redis_primaries
SET identity = $1, generation = generation + 1, seen_at = now(),
    replay_from = least(replay_from, seen_at - make_interval(secs => $2)),
    replay_to = clock_timestamp()
"""

# The window's oldest $1 rows, with every row that shares the last one's published_at (marked by the
# same statement), made unpublished again; the window then starts just after them (timestamps have
# microseconds), or closes when it held no more. The bounds are InitPlans, so the index scan is one
# range read in published_at order that stops after $1 rows.
REPLAY_BATCH = """
WITH bounds AS MATERIALIZED (SELECT replay_from, replay_to FROM redis_primaries),
batch AS MATERIALIZED (
    SELECT max(published_at) AS last, count(*) = $1 AS more FROM (
        SELECT published_at FROM room_events
        WHERE published_at >= (SELECT replay_from FROM bounds) AND published_at < (SELECT replay_to FROM bounds)
        ORDER BY published_at
        LIMIT $1
    ) AS oldest
),
unmarked AS (
    UPDATE room_events SET published_at = NULL
    WHERE published_at >= (SELECT replay_from FROM bounds) AND published_at <= (SELECT last FROM batch)
    RETURNING 1
),
moved AS (
    UPDATE redis_primaries SET
        replay_from = CASE WHEN (SELECT more FROM batch) THEN (SELECT last FROM batch) + interval '1 microsecond' END,
        replay_to = CASE WHEN (SELECT more FROM batch) THEN replay_to END
)
SELECT count(*) FROM unmarked
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
    await conn.execute(_CHANGED, identity, float(replay_seconds))
    return Seen(changed=True, replaying=True)


async def unmark_replay_batch(conn: Connection, limit: int) -> int:
    """Make the oldest `limit` published events of the replay window (and those marked together with
    the last of them) unpublished again; close the window once it holds no more. Returns how many."""
    unmarked: int = await conn.fetchval(REPLAY_BATCH, limit)
    return unmarked
