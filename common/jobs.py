"""Jobs the API asks the worker to run, through arq's queue in Redis."""

from __future__ import annotations

from arq.connections import ArqRedis

RESTORE_ROOM_CACHE = "restore_room_cache"


async def request_restore(queue: ArqRedis, room_id: str) -> None:
    """Ask the worker to put `room:{room_id}` back. Repeated requests for a room collapse into one job."""
    await queue.enqueue_job(RESTORE_ROOM_CACHE, room_id, _job_id=f"restore-room:{room_id}")
