"""Ending rooms whose lifetime is over."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from common.db import outbox, rooms
from common.db.outbox import Outboxed
from common.db.pool import connection
from common.tracing import current_traceparent
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

_BATCH = 1000


async def expire_rooms(ctx: dict[str, Any]) -> int:
    """Mark expired rooms inactive, each with a `room.ended` (reason `expired`) event; returns how many.

    Their cache entries have already lapsed (they are set to expire with the room); they are ended
    again on publishing, so no consumer of `room.ended` can find them. Events Redis does not take
    wait in the outbox for the relay.
    """
    res: WorkerResources = ctx["resources"]
    timeout = res.settings.worker_db_timeout_seconds

    async def mark(changes: Sequence[Outboxed]) -> None:
        async with connection(res.pool, timeout) as conn:
            await outbox.mark_published(conn, outbox.marks_of(changes))

    ended = 0
    while True:
        async with connection(res.pool, timeout) as conn:
            batch = await rooms.expire_rooms(conn, _BATCH, current_traceparent())  # the job's span, if traced
        if not batch:
            return ended
        ended += len(batch)
        await res.publisher.publish(batch, mark)
        log.info("expired %d rooms", len(batch))
        if len(batch) < _BATCH:
            return ended
