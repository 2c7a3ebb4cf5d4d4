"""What many tests do with rooms: make one through the API, and read the events the service wrote."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import AsyncTestClient

from common.rooms.events import RoomEvent, from_stream_fields


async def create(client: AsyncTestClient, host: dict[str, str], **body: object) -> dict[str, Any]:
    """A new room of `host` with the options of `body` (none: no body), as the API answered it."""
    response = await client.post("/rooms", headers=host, json=body or None)
    assert response.status_code == 201, response.text
    return response.json()


async def events_of(redis_client, stream_name: str, room_id: str) -> list[RoomEvent]:
    events = [from_stream_fields(fields) for _, fields in await redis_client.xrange(stream_name)]
    return [e for e in events if e.room_id == room_id]


async def raw_data_of(redis_client, stream_name: str, room_id: str, type_: str) -> list[dict[str, Any]]:
    """The `data` of the room's entries of `type_`, as a consumer parses it."""
    entries = await redis_client.xrange(stream_name)
    return [
        json.loads(fields[b"data"])
        for _, fields in entries
        if fields[b"roomId"].decode() == room_id and fields[b"type"].decode() == type_
    ]
