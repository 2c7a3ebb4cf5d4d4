"""Ending rooms whose lifetime is over."""

from __future__ import annotations

import logging
from typing import Any

from common import queries
from common.database import connection
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

_BATCH = 1000


async def expire_rooms(ctx: dict[str, Any]) -> int:
    """Mark expired rooms inactive, each with a `room.ended` (reason `expired`) event; returns how many.

    Their cache entries have already lapsed (they are set to expire with the room); they are ended
    again here before the events go out, so no consumer of `room.ended` can find them.
    """
    res: WorkerResources = ctx["resources"]
    ended = 0
    while True:
        async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
            batch = await queries.expire_rooms(conn, _BATCH)
        if not batch:
            return ended
        ended += len(batch)
        events = [item.event for item in batch]
        if await res.cache.write(end=[event.data for event in events], publish=events):
            async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
                await queries.mark_published(conn, [item.outbox_id for item in batch])
        log.info("expired %d rooms", len(batch))
        if len(batch) < _BATCH:
            return ended
