"""The outbox relay, and pruning: events Redis did not take when they happened are published once it is
back; rows the stream no longer holds go."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from common.db import idempotency, outbox
from common.db.pool import Connection, connection
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One relay at a time across all workers, so events leave in outbox order.
_RELAY_LOCK = 0x52656C61  # "Rela"
_BATCH = 500
_PRUNE_BATCH = 10_000


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """Publish unpublished outbox rows, oldest first; returns how many. Runs every second (cron).

    What the API could not do after commit, the relay does now, cache first as always.
    """
    res: WorkerResources = ctx["resources"]
    settings = res.settings
    relayed = 0
    while True:
        async with connection(res.pool, settings.worker_db_timeout_seconds) as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return relayed  # another worker is relaying
            batch = await outbox.unpublished_events(conn, settings.relay_grace_seconds, _BATCH)
            if not batch:
                return relayed

            async def mark(outbox_ids: list[int], conn: Connection = conn) -> None:
                await outbox.mark_published(conn, outbox_ids)  # in the transaction that holds the lock

            if not await res.publisher.publish(batch, mark):
                log.info("Redis unavailable; %d+ events wait in the outbox", len(batch))
                return relayed
        relayed += len(batch)
        log.info("relayed %d events from the outbox", len(batch))
        if len(batch) < _BATCH:
            return relayed


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
