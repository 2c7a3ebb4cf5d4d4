"""The outbox relay: events Redis did not take when they happened are published once it is back.
(Published rows go with the pruning, worker/jobs/prune.py.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from common.db import outbox
from common.db.outbox import Outboxed
from common.db.pool import Connection, connection
from common.db.publication import note_primaries, unmark_replay_batch
from common.redis.client import primaries_identity
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One relay at a time across all workers, so events leave in outbox order.
_RELAY_LOCK = 0x52656C61  # "Rela"
_BATCH = 500
# Events of a replay window made unpublished again per run: above the event rate at peak, so that a
# replay ends, and a statement under a second (0.8-0.9 s measured: docs/scaling.md), during which
# marks, and the PATCH and DELETE that flush marks first, wait.
_REPLAY_BATCH = 20_000


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """Publish unpublished outbox rows, oldest first; returns how many. Runs every second (cron).

    What the API could not do after commit, the relay does now, cache first as always. It first looks
    at which Redis primaries it publishes to: after a failover or a restart, the events of the last
    moments before it are published again (see `note_primaries`).
    """
    res: WorkerResources = ctx["resources"]
    settings = res.settings
    identity = await res.guarded.call(primaries_identity, default=None)
    if identity is None:
        return 0  # Redis is unavailable: nothing can be published now
    # A short transaction of its own, with no Redis call in it: the primaries' row, which the marks
    # of every API process wait for, stays locked only for its few statements (a replay batch's
    # UPDATE, under a second, the longest).
    async with connection(res.pool, settings.worker_db_timeout_seconds) as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
            return 0  # another worker is relaying
        await _note_primaries(conn, identity, settings.stream_replay_seconds)
    # Once a run, by the one relaying: XADD trims by length only (see common/redis/stream.py).
    await res.guarded.call(res.publisher.stream.trim_by_age, default=0)
    relayed = 0
    while True:
        async with connection(res.pool, settings.worker_db_timeout_seconds) as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return relayed  # another worker is relaying
            batch = await outbox.unpublished_events(conn, settings.relay_grace_seconds, _BATCH)
            if not batch:
                return relayed

            async def mark(changes: Sequence[Outboxed], conn: Connection = conn) -> None:
                await outbox.mark_published(conn, outbox.marks_of(changes))  # in the transaction holding the lock

            if not await res.publisher.publish(batch, mark):
                # Those the stream took are marked with this transaction; the others wait.
                log.info("Redis unavailable, or it refused some events; up to %d wait in the outbox", len(batch))
                return relayed
        relayed += len(batch)
        log.info("relayed %d events from the outbox", len(batch))
        if len(batch) < _BATCH:
            return relayed


async def _note_primaries(conn: Connection, identity: str, replay: int) -> None:
    """Note who the Redis primaries are, and go on with a replay."""
    seen = await note_primaries(conn, identity, replay)
    if seen.changed:
        log.warning(
            "Redis primaries changed (a failover or a restart): the events published from %d s before "
            "are published again",
            replay,
        )
    if seen.replaying and (unmarked := await unmark_replay_batch(conn, _REPLAY_BATCH)):
        log.info("%d events of the replay window are published again", unmarked)
