"""What the presence tests share: rooms with options, and what the pass wrote of them in Postgres."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from common.redis.sessions import Session, epoch_ms
from tests.support.rooms import create

HEARTBEAT_MS = 30_000


def someone() -> str:
    return str(uuid.uuid4())


async def room_with(client, host, **body: object) -> str:
    return (await create(client, host, **body))["roomId"]


async def events(db, room_id: str, *types: str) -> list[tuple[str, datetime, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT type, occurred_at, data FROM room_events WHERE room_id = $1 AND type = ANY($2::text[]) ORDER BY id",
        room_id,
        list(types),
    )
    return [(row["type"], row["occurred_at"], json.loads(row["data"])) for row in rows]


async def recorded(db, room_id: str) -> list[Any]:
    return await db.fetch(
        "SELECT s.* FROM room_sessions s JOIN meetings m ON m.id = s.meeting_id WHERE m.room_id = $1 "
        "ORDER BY started_at",
        room_id,
    )


def as_session(row: Any) -> Session:
    return Session(
        epoch_ms(row["started_at"]),
        None if row["ended_at"] is None else epoch_ms(row["ended_at"]),
        row["peak_participants"],
        row["distinct_participants"],
        row["participant_ms"],
        row["end_reason"],
    )


async def is_active(db, room_id: str) -> bool:
    return await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", room_id)
