"""Pruning, at the worker's start and every ROOMS_PRUNE_INTERVAL_SECONDS: ended rooms past the retention
with all that is recorded about them, outbox rows the stream no longer holds, Idempotency-Keys past
their 24 hours. In batches, each a short transaction of its own, so writes never wait long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from common.db import idempotency, outbox, retention
from common.db.pool import Connection, connection
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# Rooms per batch: about 50 ms of locks at 3 history rows a room (docs/scaling.md).
ROOM_BATCH = 1000
# Outbox rows and keys per batch: single-table deletes of narrow rows.
_ROW_BATCH = 10_000
# A run starts no batch after this share of the interval, so that it ends (within the cron's timeout,
# worker/schedule.py) before the next begins: a backlog (the first run on years of rooms) is worked
# off over several runs. At the peak an hour adds 18M rooms (docs/scaling.md): about 30 minutes of
# pruning at the measured rate, within the 48 minutes of the default hour.
RUN_SHARE = 0.8


def run_seconds(prune_interval_seconds: int) -> float:
    """How long one run of the pruning may go on starting batches."""
    return prune_interval_seconds * RUN_SHARE


_BEGINNING = datetime.min.replace(tzinfo=UTC)

# A run goes on from where the one before reached (kept in the worker's context), not from the
# beginning: the index entries of the rooms earlier runs deleted stay until a vacuum, and walking
# them again each run would cost more every hour. Once a day, and at the worker's start, a run
# starts at the beginning, for the rooms passed over (one whose event still waited for the relay).
_FROM = "prune_rooms_from"
_FULL_PASS_SECONDS = 86400


async def prune(ctx: dict[str, Any]) -> int:
    """Prune what is past its keeping; returns how many rows went (the daily statistics are kept)."""
    res: WorkerResources = ctx["resources"]
    deadline = time.monotonic() + run_seconds(res.settings.prune_interval_seconds)
    stream_retention = res.settings.stream_retention_seconds
    # The outbox first: it grows fastest (36M rows an hour at the peak), and its batches are the cheapest.
    pruned = await _prune_rows(
        res, "room_events", lambda conn: outbox.prune_published(conn, stream_retention, _ROW_BATCH), deadline
    )
    pruned += await _prune_rows(
        res, "idempotency_keys", lambda conn: idempotency.prune_idempotency_keys(conn, _ROW_BATCH), deadline
    )
    return pruned + await _prune_rooms(res, deadline, ctx)


def retention_seconds(res: WorkerResources) -> float | None:
    """How long ago a room must have ended to be pruned; None: rooms are kept for ever.

    Never less than the stream keeps events: an event of the room read from the stream after its
    history went would be recorded again, and counted into the daily statistics a second time.
    """
    days = res.settings.retention_days
    return None if days == 0 else float(max(days * 86400, res.settings.stream_retention_seconds))


async def _prune_rooms(res: WorkerResources, deadline: float, ctx: dict[str, Any]) -> int:
    older_than = retention_seconds(res)
    if older_than is None:
        return 0
    resumed_from, full_pass_at = ctx.get(_FROM, (_BEGINNING, 0.0))
    if time.monotonic() - full_pass_at >= _FULL_PASS_SECONDS or full_pass_at == 0.0:
        resumed_from, full_pass_at = _BEGINNING, time.monotonic()
    after, pruned = resumed_from, 0
    while time.monotonic() < deadline:
        async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
            batch = await retention.prune_ended_rooms(conn, older_than, after, ROOM_BATCH)
        res.monitor.pruned("meetings", batch.rooms)
        res.monitor.pruned("room_history", batch.history)
        res.monitor.pruned("room_events", batch.events)
        res.monitor.pruned("idempotency_keys", batch.keys)
        pruned += batch.rooms + batch.history + batch.events + batch.keys
        if batch.last_expiry is not None:
            after = batch.last_expiry
        if batch.rooms < ROOM_BATCH:
            break
    else:
        log.warning("pruning stopped at its time with ended rooms left; the next run goes on")
    ctx[_FROM] = (after, full_pass_at)
    if pruned:
        log.info("pruned %d rows of rooms ended more than %.0f s ago", pruned, older_than)
    return pruned


async def _prune_rows(
    res: WorkerResources, table: str, prune_batch: Callable[[Connection], Awaitable[int]], deadline: float
) -> int:
    pruned = 0
    while time.monotonic() < deadline:
        async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
            deleted = await prune_batch(conn)
        res.monitor.pruned(table, deleted)
        pruned += deleted
        if deleted < _ROW_BATCH:
            break
    return pruned
