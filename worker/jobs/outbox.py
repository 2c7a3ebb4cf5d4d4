"""The outbox relay, and pruning: events Redis did not take when they happened are published once it is
back; rows the stream no longer holds go."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common.db import idempotency, outbox
from common.db.outbox import Outboxed
from common.db.pool import Connection, connection
from common.db.primaries import note_primaries
from common.redis.client import primary_run_ids
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One relay at a time across all workers, so events leave in outbox order.
_RELAY_LOCK = 0x52656C61  # "Rela"
_BATCH = 500
_PRUNE_BATCH = 10_000


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """Publish unpublished outbox rows, oldest first; returns how many. Runs every second (cron).

    What the API could not do after commit, the relay does now, cache first as always. It first looks
    at which Redis primaries it publishes to: after a failover or a restart, the events of the last
    moments before it are published again (see `note_primaries`).
    """
    res: WorkerResources = ctx["resources"]
    settings = res.settings
    relayed = 0
    first = True
    while True:
        async with connection(res.pool, settings.worker_db_timeout_seconds) as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return relayed  # another worker is relaying
            if first and not await _check_primaries(conn, res):
                return relayed  # Redis is unavailable: nothing can be published now
            first = False
            batch = await outbox.unpublished_events(conn, settings.relay_grace_seconds, _BATCH)
            if not batch:
                return relayed

            async def mark(changes: Sequence[Outboxed], conn: Connection = conn) -> None:
                await outbox.mark_published(conn, changes)  # in the transaction that holds the lock

            if not await res.publisher.publish(batch, mark):
                log.info("Redis unavailable; %d+ events wait in the outbox", len(batch))
                return relayed
        relayed += len(batch)
        log.info("relayed %d events from the outbox", len(batch))
        if len(batch) < _BATCH:
            return relayed


async def _check_primaries(conn: Connection, res: WorkerResources) -> bool:
    """Note the Redis primaries; False if Redis could not say which they are."""
    run_ids = await res.guarded.call(primary_run_ids, default=None)
    if run_ids is None:
        return False
    replay = res.settings.stream_replay_seconds
    if republished := await note_primaries(conn, ",".join(run_ids), replay):
        log.warning(
            "Redis primaries changed (a failover or a restart): %d events published in the %d s before "
            "are published again",
            republished,
            replay,
        )
    return True


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
