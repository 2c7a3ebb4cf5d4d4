"""A room's history: its lifecycle events as the worker recorded them from the event stream."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get
from litestar.di import NamedDependency

from api.deps import client_of, service_of
from api.errors import error_responses
from api.openapi import CALLER
from api.schemas import RoomCode, RoomHistory, room_code


@get(
    "/{room_id:str}/history",
    summary="A room's lifecycle events, oldest first (host or co-host)",
    description=(
        "Recorded by the worker from the event stream, so a moment behind live changes. Only the room's host "
        "and co-hosts may read it: the events name the host and every change."
    ),
    responses=error_responses(400, 401, 403, 404, 429, 503),
    security=CALLER,
)
async def get_room_history(
    request: Request[Any, Any, Any], caller: NamedDependency[UUID], room_id: RoomCode
) -> RoomHistory:
    code = room_code(room_id)
    events = await service_of(request.app.state).history(code, client_of(request), caller)
    return RoomHistory(room_id=code, events=events)
