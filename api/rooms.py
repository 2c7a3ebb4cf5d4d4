"""The rooms resource: create a room, and tell whether a room exists and who may join it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import PathParameter

from api.dependencies import provide_caller, provide_store
from api.errors import ApiError, error_responses
from common.events import RoomEvent
from common.room_codes import normalize_room_code
from common.room_store import RoomStore
from common.rooms import RoomView, to_view


class CreateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Optional body of `POST /rooms`."""

    max_participants: int | None = None


# Decoded here rather than by Litestar, whose signature model converts leniently ("4" -> 4):
# a client that sends the wrong type should hear so.
_CREATE_DECODER = msgspec.json.Decoder(CreateRoomRequest | None)


def _create_options(raw: bytes) -> CreateRoomRequest | None:
    if not raw.strip():
        return None
    try:
        options: CreateRoomRequest | None = _CREATE_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_body", f"malformed JSON: {exc}") from None
    return options


@dataclass
class _CreateRoomOperation(Operation):
    """Documents the body that `create_room` decodes itself."""

    def __post_init__(self) -> None:
        limit_note = "Between 2 and the configured limit (ROOMS_MAX_PARTICIPANTS_LIMIT); default from settings."
        self.request_body = RequestBody(
            required=False,
            description="Room options; the body may be omitted.",
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            "maxParticipants": Schema(type=OpenAPIType.INTEGER, minimum=2, description=limit_note)
                        },
                        additional_properties=False,
                    )
                )
            },
        )


@post(
    "/",
    status_code=201,
    summary="Create a room",
    description=(
        "Creates a meeting hosted by the caller and answers with its public code. "
        "The body is optional; `maxParticipants` defaults to the configured default."
    ),
    responses=error_responses(400, 401, 413, 422, 503),
    operation_class=_CreateRoomOperation,
)
async def create_room(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    store: NamedDependency[RoomStore],
) -> Response[RoomView]:
    options = _create_options(await request.body())
    room = await store.create(caller, options.max_participants if options else None)
    return Response(to_view(room), status_code=201, headers={"Location": f"/rooms/{room.room_id}"})


@get(
    "/{room_id:str}",
    summary="Validate a room",
    description=("Answers 200 with the room while it is live. The code is case-insensitive and may omit its dashes."),
    responses=error_responses(400, 404, 410, 503),
)
async def get_room(
    store: NamedDependency[RoomStore],
    room_id: Annotated[str, PathParameter(description="The room code, e.g. `abc-defg-hij`.")],
) -> RoomView:
    return await store.view(_room_code(room_id))


class RoomHistory(msgspec.Struct, frozen=True, rename="camel"):
    room_id: str
    events: list[RoomEvent]


@get(
    "/{room_id:str}/history",
    summary="A room's lifecycle events, oldest first",
    description="Recorded by the worker from the event stream, so a moment behind live changes.",
    responses=error_responses(400, 404, 503),
)
async def get_room_history(
    store: NamedDependency[RoomStore],
    room_id: Annotated[str, PathParameter(description="The room code, e.g. `abc-defg-hij`.")],
) -> RoomHistory:
    code = _room_code(room_id)
    return RoomHistory(room_id=code, events=await store.history(code))


def _room_code(raw: str) -> str:
    code = normalize_room_code(raw)
    if code is None:
        raise ApiError(400, "invalid_room_id", "roomId must be ten letters like abc-defg-hij")
    return code


rooms_router = Router(
    path="/rooms",
    route_handlers=[create_room, get_room, get_room_history],
    dependencies={
        "caller": Provide(provide_caller, sync_to_thread=False),
        "store": Provide(provide_store, sync_to_thread=False),
    },
    tags=["rooms"],
)
