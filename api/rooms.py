"""The rooms resource: create a room, and tell whether a room exists and who may join it."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Response, Router, get, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, Parameter

from api.dependencies import provide_caller, provide_store
from api.errors import ApiError, ErrorBody
from common.room_codes import normalize_room_code
from common.room_store import RoomStore
from common.rooms import RoomView, to_view


class CreateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Optional body of `POST /rooms`."""

    max_participants: int | None = None


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {status: ResponseSpec(data_container=ErrorBody, description="Error") for status in statuses}


@post(
    "/",
    status_code=201,
    summary="Create a room",
    description=(
        "Creates a meeting hosted by the caller and answers with its public code. "
        "The body is optional; `maxParticipants` defaults to the configured default."
    ),
    responses=_errors(400, 401, 413, 422, 503),
    response_headers=None,
)
async def create_room(
    caller: UUID,
    store: RoomStore,
    data: Annotated[CreateRoomRequest | None, Body(description="Room options; may be omitted.")] = None,
) -> Response[RoomView]:
    room = await store.create(caller, data.max_participants if data else None)
    return Response(to_view(room), status_code=201, headers={"Location": f"/rooms/{room.room_id}"})


@get(
    "/{room_id:str}",
    summary="Validate a room",
    description=(
        "Answers 200 with the room while it is live. The code is case-insensitive and may omit its dashes."
    ),
    responses=_errors(400, 404, 410, 503),
)
async def get_room(
    store: RoomStore,
    room_id: Annotated[str, Parameter(description="The room code, e.g. `abc-defg-hij`.")],
) -> RoomView:
    code = normalize_room_code(room_id)
    if code is None:
        raise ApiError(400, "invalid_room_id", "roomId must be ten letters like abc-defg-hij")
    return await store.view(code)


rooms_router = Router(
    path="/rooms",
    route_handlers=[create_room, get_room],
    dependencies={"caller": Provide(provide_caller, sync_to_thread=False), "store": Provide(provide_store, sync_to_thread=False)},
    tags=["rooms"],
)
