"""Starting booked rooms at their start, and ending rooms whose lifetime is over."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common.db import lifecycle, outbox
from common.db.lifecycle import JobEvent
from common.db.outbox import Outboxed
from common.db.pool import Connection, connection
from common.tracing import current_traceparent
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

_BATCH = 1000

Statement = Callable[[Connection, int, str | None], Awaitable[list[JobEvent]]]


async def start_rooms(ctx: dict[str, Any]) -> int:
    """Start the booked rooms whose start has come, each with a `room.started` event; returns how many.

    Runs every second: the event is due at `startsAt` (docs/events.md has how late it comes). The
    room object needs nothing: it opens to joins by its own `opensAtMs`, whoever runs this.
    """
    return await _in_batches(ctx, lifecycle.start_rooms, "started")


async def expire_rooms(ctx: dict[str, Any]) -> int:
    """Mark expired rooms inactive, each with a `room.ended` (reason `expired`) event; returns how many.

    Their cache entries have already lapsed (they are set to expire with the room); they are ended
    again on publishing, so no consumer of `room.ended` can find them.
    """
    ended = await _in_batches(ctx, lifecycle.expire_rooms, "expired")
    ctx["resources"].metrics.rooms_ended("expired", ended)
    return ended


async def _in_batches(ctx: dict[str, Any], statement: Statement, done: str) -> int:
    """Run `statement` batch after batch until a batch is not full; publish each batch's events.

    An event whose room has an earlier one waiting in the outbox only goes to the cache here: the relay
    publishes both in order. Events Redis does not take wait in the outbox for the relay too.
    """
    res: WorkerResources = ctx["resources"]
    timeout = res.settings.worker_db_timeout_seconds

    async def mark(changes: Sequence[Outboxed]) -> None:
        async with connection(res.pool, timeout) as conn:
            await outbox.mark_published(conn, outbox.marks_of(changes))

    count = 0
    while True:
        async with connection(res.pool, timeout) as conn:
            batch = await statement(conn, _BATCH, current_traceparent())  # the job's span, if traced
        if not batch:
            return count
        count += len(batch)
        now = [event.change for event in batch if event.publish_now]
        later = [event.change for event in batch if not event.publish_now]
        if now:
            await res.publisher.publish(now, mark)
        if later:
            await res.publisher.apply_only(later)
        log.info("%s %d rooms", done, len(batch))
        if len(batch) < _BATCH:
            return count
