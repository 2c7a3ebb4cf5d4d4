"""The outbox relay, and pruning: events Redis did not take when they happened are published once it is
back; rows the stream no longer holds go."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common.db import idempotency, outbox
from common.db.outbox import Outboxed
from common.db.pool import Connection, connection
from common.db.primaries import note_primaries, unmark_replay_batch
from common.redis.client import primaries_identity
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One relay at a time across all workers, so events leave in outbox order.
_RELAY_LOCK = 0x52656C61  # "Rela"
_BATCH = 500
_PRUNE_BATCH = 10_000
# Events of a replay window made unpublished again per run: above the event rate at peak, so that a
# replay ends, and a short statement (about a third of a second).
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
    # UPDATE, a third of a second, the longest).
    async with connection(res.pool, settings.worker_db_timeout_seconds) as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
            return 0  # another worker is relaying
        await _note_primaries(conn, identity, settings.stream_replay_seconds)
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
                log.info("Redis unavailable; %d+ events wait in the outbox", len(batch))
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


async def prune_outbox(ctx: dict[str, Any]) -> int:
    """Drop published outbox rows once the stream no longer holds their events either, and
    Idempotency-Keys past their 24 hours. Returns how many rows went."""
    res: WorkerResources = ctx["resources"]
    retention = res.settings.stream_retention_seconds
    prunes: list[Callable[[Connection], Awaitable[int]]] = [
        lambda conn: outbox.prune_published(conn, retention, _PRUNE_BATCH),
        lambda conn: idempotency.prune_idempotency_keys(conn, _PRUNE_BATCH),
    ]
    pruned = 0
    for prune in prunes:
        while True:  # in batches, each its own short transaction
            async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
                deleted = await prune(conn)
            pruned += deleted
            if deleted < _PRUNE_BATCH:
                break
    return pruned
