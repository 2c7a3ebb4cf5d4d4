"""The jobs the API asks the worker to run through arq's queue: their names and ids, shared by both."""

from __future__ import annotations

RESTORE_ROOM_CACHE = "restore_room_cache"


def restore_job_id(room_id: str) -> str:
    """Repeated requests to restore one room collapse into one job."""
    return f"restore-room:{room_id}"
