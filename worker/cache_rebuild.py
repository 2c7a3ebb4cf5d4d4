"""Keeping `room:{roomId}` present for every live room."""

from __future__ import annotations

from typing import Any

from common import queries
from common.cache import RoomCache
from common.database import connection
from common.settings import Settings


async def restore_room_cache(ctx: dict[str, Any], room_id: str) -> bool:
    """Re-cache one room from Postgres if it is live. Returns whether it is now cached."""
    settings: Settings = ctx["settings"]
    cache: RoomCache = ctx["cache"]
    async with connection(ctx["pool"], settings.db_timeout_seconds) as conn:
        stored = await queries.get_room(conn, room_id)
    if stored is None or not stored.live:
        return False
    return await cache.put(stored.room)
