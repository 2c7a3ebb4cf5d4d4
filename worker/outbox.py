"""The outbox relay: events Redis did not take when they happened are published once it is back."""

from __future__ import annotations

import logging
from typing import Any

from common import queries
from common.database import Connection, connection
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One relay at a time across all workers, so events leave in outbox order.
_RELAY_LOCK = 0x52656C61  # "Rela"
_BATCH = 500


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """Publish unpublished outbox rows, oldest first; returns how many. Runs every second (cron)."""
    res: WorkerResources = ctx["resources"]
    settings = res.settings
    relayed = 0
    while True:
        async with connection(res.pool, settings.worker_db_timeout_seconds) as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return relayed  # another worker is relaying
            batch = await queries.unpublished_events(conn, settings.relay_grace_seconds, _BATCH)
            if not batch:
                return relayed
            events = [item.event for item in batch]
            # What the API could not do after commit, the relay does now, cache first as always:
            # put_room.lua keeps newer objects in place and ended rooms out.
            put = [e.data for e in events if e.type != "room.ended"]
            end = [e.data for e in events if e.type == "room.ended"]
            if not await res.cache.write(put=put, end=end, publish=events):
                log.info("Redis unavailable; %d+ events wait in the outbox", len(batch))
                return relayed
            await queries.mark_published(conn, [item.outbox_id for item in batch])
        relayed += len(batch)
        log.info("relayed %d events from the outbox", len(batch))
        if len(batch) < _BATCH:
            return relayed


_PRUNE_BATCH = 10_000


async def prune_outbox(ctx: dict[str, Any]) -> int:
    """Drop published outbox rows once the stream no longer holds their events either, and
    Idempotency-Keys past their 24 hours. Returns how many rows went."""
    res: WorkerResources = ctx["resources"]
    retention = res.settings.stream_retention_seconds

    async def published_events(conn: Connection) -> int:
        return await queries.prune_published(conn, retention, _PRUNE_BATCH)

    async def idempotency_keys(conn: Connection) -> int:
        return await queries.prune_idempotency_keys(conn, _PRUNE_BATCH)

    pruned = 0
    for prune in (published_events, idempotency_keys):
        while True:  # in batches, each its own short transaction
            async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
                deleted = await prune(conn)
            pruned += deleted
            if deleted < _PRUNE_BATCH:
                break
    return pruned
