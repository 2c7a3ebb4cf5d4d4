"""A room's history: its lifecycle events as the worker recorded them from the event stream."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from api.deps import client_of, service_of
from api.errors import error_responses
from api.schemas import RoomCode, RoomHistory, room_code


@get(
    "/{room_id:str}/history",
    summary="A room's lifecycle events, oldest first",
    description="Recorded by the worker from the event stream, so a moment behind live changes.",
    responses=error_responses(400, 404, 429, 503),
)
async def get_room_history(request: Request[Any, Any, Any], room_id: RoomCode) -> RoomHistory:
    code = room_code(room_id)
    return RoomHistory(room_id=code, events=await service_of(request.app.state).history(code, client_of(request)))
