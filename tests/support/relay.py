"""The outbox relay as the tests run it: at once, not after its grace period."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from tests.support.waiting import eventually
from worker.resources import WorkerResources


def relay_now(res: WorkerResources) -> dict[str, Any]:
    """The relay's context with no grace period, so rows written a moment ago count as waiting. (The
    grace must exceed the API's database timeout, since an API marks within it: this relay has no API.)"""
    settings = msgspec.structs.replace(res.settings, relay_grace_seconds=0.001, db_timeout_seconds=0.0005)
    return {"resources": msgspec.structs.replace(res, settings=settings)}


async def published(db: asyncpg.Connection, room_id: str) -> None:
    """Wait until every outbox row of the room is marked published: the API marks them a moment after
    answering (common/service/publish.py DeferredMarks), and until then a worker's job leaves its own
    event of the room to the relay, which publishes in order."""

    async def marked() -> bool:
        query = "SELECT count(*) FROM room_events WHERE room_id = $1 AND published_at IS NULL"
        return await db.fetchval(query, room_id) == 0

    await eventually(marked, 10, f"the events of {room_id} marked published")
