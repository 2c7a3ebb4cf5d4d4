"""Keeping `room:{roomId}` present, with its remaining lifetime, for every live room."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import Retry

from common.db import rooms
from common.db.pool import connection
from worker.resources import WorkerResources

log = logging.getLogger(__name__)

# One sweep at a time across all workers: a second one would only repeat the first.
_SWEEP_LOCK = 0x53776565  # "Swee"


class RedisUnavailable(RuntimeError):
    pass


async def restore_room_cache(ctx: dict[str, Any], room_id: str) -> bool:
    """Re-cache one room if it is live; the API asks after serving it from Postgres. Returns whether it is cached."""
    res: WorkerResources = ctx["resources"]
    async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
        stored = await rooms.get_room(conn, room_id)
    if stored is None or not stored.live:
        return False
    if await res.cache.write(put=[stored.cached]) is None:
        # Redis is away again: try later, past the breaker's retry interval (arq stops at max_tries).
        raise Retry(defer=ctx["job_try"] * (res.settings.redis_retry_seconds + 1))
    return True


async def sweep_room_cache(ctx: dict[str, Any]) -> int:
    """Walk every live room in keyset pages, restore the keys that are missing; returns how many.

    Memory stays at one page whatever the number of rooms. After a Redis restart or flush, one sweep
    puts every live room back.
    """
    res: WorkerResources = ctx["resources"]
    settings = res.settings
    restored = 0
    async with connection(res.pool, settings.worker_db_timeout_seconds, whole=False) as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _SWEEP_LOCK):
            return 0
        try:
            # Two pages in flight at most: Postgres reads the next while Redis takes this one.
            next_page = asyncio.create_task(rooms.live_rooms_after(lock_conn, "", settings.sweep_batch_size))
            try:
                while page := await next_page:
                    next_page = asyncio.create_task(
                        rooms.live_rooms_after(lock_conn, page[-1].room.room_id, settings.sweep_batch_size)
                    )
                    # A room whose keys Redis refuses is logged and counted by the cache, and left
                    # out: the other rooms of the page go on.
                    done = await res.cache.write_each(put=page, only_if_absent=True)
                    if done is None:
                        raise RedisUnavailable("cannot restore room keys")
                    restored += done.written
            finally:
                # Let a page in flight finish (each statement is bounded) rather than cancel it: the
                # connection is still needed, to release the lock.
                await asyncio.gather(next_page, return_exceptions=True)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", _SWEEP_LOCK)
    if restored:
        log.info("sweep restored %d room keys", restored)
    return restored
