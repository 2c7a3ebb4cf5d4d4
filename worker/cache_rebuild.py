"""Keeping `room:{roomId}` present, with its remaining lifetime, for every live room."""

from __future__ import annotations

import logging
from typing import Any

from common import queries
from common.database import connection
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
        stored = await queries.get_room(conn, room_id)
    if stored is None or not stored.live:
        return False
    if not await res.cache.put(stored.room):
        raise RedisUnavailable("could not write the room; arq retries the job")
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
            after = ""
            while True:
                rooms = await queries.live_rooms_after(lock_conn, after, settings.sweep_batch_size)
                if not rooms:
                    break
                after = rooms[-1].room_id
                missing = await res.cache.missing([room.room_id for room in rooms])
                if missing is None:
                    raise RedisUnavailable("cannot check room keys")
                if missing:
                    wanted = set(missing)
                    if not await res.cache.write(put=[room for room in rooms if room.room_id in wanted]):
                        raise RedisUnavailable("cannot restore room keys")
                    restored += len(missing)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", _SWEEP_LOCK)
    if restored:
        log.info("sweep restored %d room keys", restored)
    return restored
