"""The API's own background loops: marking published outbox rows, and asking the worker to restore
rooms that Redis could not take while it was away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis

from common.jobs import RESTORE_ROOM_CACHE, restore_job_id
from common.redis.client import REDIS_UNAVAILABLE
from common.redis.guarded import GuardedRedis

log = logging.getLogger(__name__)

# Rooms served from Postgres while Redis was away, remembered so the worker can restore them once it
# is back. Bounded: past this many, the worker's periodic sweep restores the rest.
_MAX_RESTORE_REQUESTS = 10_000


async def every(interval: float, work: Callable[[], Awaitable[None]]) -> None:
    """Runs for the life of the app: `work` every `interval` seconds. `work` must not raise."""
    while True:
        await asyncio.sleep(interval)
        await work()


class RestoreRequests:
    """Live rooms served from Postgres that Redis could not take, until the worker is asked to restore them."""

    def __init__(self, queue: ArqRedis, redis: GuardedRedis, timeout: float) -> None:
        self._queue = queue
        self._redis = redis
        self._timeout = timeout
        self._rooms: set[str] = set()

    def note(self, room_id: str) -> None:
        if len(self._rooms) < _MAX_RESTORE_REQUESTS:
            self._rooms.add(room_id)

    async def forward(self) -> None:
        """Once Redis is back, ask the worker to restore what was missed. Never raises."""
        if not self._rooms or not self._redis.available:
            return
        for room_id in list(self._rooms):
            try:
                async with asyncio.timeout(self._timeout):
                    await self._queue.enqueue_job(RESTORE_ROOM_CACHE, room_id, _job_id=restore_job_id(room_id))
            except REDIS_UNAVAILABLE:
                break  # Redis went away again; keep the rest for the next round
            except Exception:  # runs in a background task, which must outlive any one failure
                log.exception("could not ask for room %s to be restored", room_id)
            self._rooms.discard(room_id)
