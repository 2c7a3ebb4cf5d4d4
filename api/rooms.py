"""The rooms resource: create, validate, list, change and end rooms, and read a room's history."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import HeaderParameter, PathParameter, QueryParameter

from api.dependencies import client_of, provide_caller, store_of
from api.errors import ApiError, error_responses
from common.events import RoomEvent
from common.room_codes import normalize_room_code
from common.room_store import RoomStatus
from common.rooms import RoomView, to_view

T = TypeVar("T")

RoomCode = Annotated[str, PathParameter(description="The room code, e.g. `abc-defg-hij` (any case, dashes optional).")]
_LIMIT_NOTE = "Between 2 and the configured limit (ROOMS_MAX_PARTICIPANTS_LIMIT)."
_MAX_PAGE = 100


# -- bodies -------------------------------------------------------------------------------------


class CreateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Optional body of `POST /rooms`."""

    max_participants: int | None = None


class UpdateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Body of `PATCH /rooms/{roomId}`."""

    max_participants: int


# Bodies are decoded here rather than by Litestar, whose signature model converts leniently
# ("4" -> 4): a client that sends the wrong type should hear so.
_CREATE_DECODER = msgspec.json.Decoder(CreateRoomRequest | None)
_UPDATE_DECODER = msgspec.json.Decoder(UpdateRoomRequest)


def _decode(raw: bytes, decoder: msgspec.json.Decoder[T], *, optional: bool) -> T | None:
    if optional and not raw.strip():
        return None
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_body", f"malformed JSON: {exc}") from None


def _limit_body(*, required: bool) -> type[Operation]:
    """An OpenAPI operation documenting the `{"maxParticipants": n}` body a handler decodes itself."""

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            schema = Schema(
                type=OpenAPIType.OBJECT,
                properties={"maxParticipants": Schema(type=OpenAPIType.INTEGER, minimum=2, description=_LIMIT_NOTE)},
                required=["maxParticipants"] if required else None,
                additional_properties=False,
            )
            self.request_body = RequestBody(
                required=required,
                description=None if required else "Room options; the body may be omitted.",
                content={"application/json": OpenAPIMediaType(schema=schema)},
            )

    return _Documented


# -- responses ----------------------------------------------------------------------------------


class RoomSummary(RoomView, frozen=True, kw_only=True):
    """A room in a host's list: `active` while it may be joined, else `ended`."""

    status: RoomStatus


class RoomPage(msgspec.Struct, frozen=True, rename="camel"):
    rooms: list[RoomSummary]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class RoomHistory(msgspec.Struct, frozen=True, rename="camel"):
    room_id: str
    events: list[RoomEvent]


# -- handlers -----------------------------------------------------------------------------------


@post(
    "/",
    status_code=201,
    summary="Create a room",
    description=(
        "Creates a meeting hosted by the caller and answers with its public code. The body is optional; "
        "`maxParticipants` defaults to the configured default. With an `Idempotency-Key`, a retry within "
        "24 h answers with the room the first request made instead of creating another."
    ),
    responses=error_responses(400, 401, 413, 422, 429, 503),
    response_headers=[
        ResponseHeader(name="Location", documentation_only=True, description="The new room: `/rooms/{roomId}`."),
        ResponseHeader(
            name="Idempotent-Replayed",
            documentation_only=True,
            required=False,
            description="`true` when this is the answer of an earlier request with the same Idempotency-Key.",
        ),
    ],
    operation_class=_limit_body(required=False),
)
async def create_room(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    state: State,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            description="Any string of 1 to 255 visible ASCII characters, unique per intended room.",
        ),
    ] = None,
) -> Response[RoomView]:
    options = _decode(await request.body(), _CREATE_DECODER, optional=True)
    if idempotency_key is not None and not _valid_key(idempotency_key):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    room, new = await store_of(state).create(caller, options.max_participants if options else None, idempotency_key)
    headers = {"Location": f"/rooms/{room.room_id}"}
    if not new:
        headers["Idempotent-Replayed"] = "true"  # the answer of an earlier request with this key
    return Response(to_view(room), status_code=201, headers=headers)


@get(
    "/",
    summary="The caller's rooms, newest first",
    description="Pages of at most `limit` rooms; while more remain, `nextCursor` fetches the next page.",
    responses=error_responses(400, 401, 503),
)
async def list_rooms(
    caller: NamedDependency[UUID],
    state: State,
    status: Annotated[RoomStatus, QueryParameter(description="Which rooms: active, ended or all.")] = "all",
    limit: Annotated[int, QueryParameter(description=f"Rooms per page, 1 to {_MAX_PAGE}.")] = 20,
    cursor: Annotated[str | None, QueryParameter(description="`nextCursor` of the previous page.")] = None,
) -> RoomPage:
    if limit < 1:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {_MAX_PAGE}")
    limit = min(limit, _MAX_PAGE)
    found = await store_of(state).host_rooms(caller, status, limit + 1, _decode_cursor(cursor) if cursor else None)
    page = found[:limit]
    rooms = [
        RoomSummary(**msgspec.structs.asdict(to_view(s.room)), status="active" if s.live else "ended") for s in page
    ]
    next_cursor = _encode_cursor(page[-1].room.created_at, page[-1].room.id) if len(found) > limit else None
    return RoomPage(rooms=rooms, next_cursor=next_cursor)


@get(
    "/{room_id:str}",
    summary="Validate a room",
    description="Answers 200 with the room while it is live. The code is case-insensitive and may omit its dashes.",
    responses=error_responses(400, 404, 410, 429, 503),
)
async def get_room(request: Request[Any, Any, Any], room_id: RoomCode) -> RoomView:
    return await store_of(request.app.state).view(_room_code(room_id), client_of(request))


@patch(
    "/{room_id:str}",
    summary="Change a room's participant limit (host only)",
    description="Signaling applies the new limit from the next join; participants already in stay.",
    responses=error_responses(400, 401, 403, 404, 410, 413, 422, 503),
    operation_class=_limit_body(required=True),
)
async def update_room(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    state: State,
    room_id: RoomCode,
) -> RoomView:
    code = _room_code(room_id)
    body = _decode(await request.body(), _UPDATE_DECODER, optional=False)
    assert body is not None  # a required body decodes or raises
    return to_view(await store_of(state).set_max_participants(code, caller, body.max_participants))


@delete(
    "/{room_id:str}",
    summary="End a room (host only)",
    description="Ends the room for everyone: it answers 410 from then on. Ending it again changes nothing.",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def end_room(caller: NamedDependency[UUID], state: State, room_id: RoomCode) -> None:
    await store_of(state).end(_room_code(room_id), caller)


@get(
    "/{room_id:str}/history",
    summary="A room's lifecycle events, oldest first",
    description="Recorded by the worker from the event stream, so a moment behind live changes.",
    responses=error_responses(400, 404, 429, 503),
)
async def get_room_history(request: Request[Any, Any, Any], room_id: RoomCode) -> RoomHistory:
    code = _room_code(room_id)
    return RoomHistory(room_id=code, events=await store_of(request.app.state).history(code, client_of(request)))


# -- helpers ------------------------------------------------------------------------------------


def _room_code(raw: str) -> str:
    code = normalize_room_code(raw)
    if code is None:
        raise ApiError(400, "invalid_room_id", "roomId must be ten letters like abc-defg-hij")
    return code


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and all("!" <= c <= "~" for c in key)


def _encode_cursor(created_at: datetime, room_uuid: UUID) -> str:
    """Opaque to clients: the keyset position (created_at, id) of the last room of a page."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{room_uuid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, room_uuid = raw.split("|")
        moment, room_uuid_ = datetime.fromisoformat(created_at), UUID(room_uuid)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)  # out of range at the edges of time: refused here, not by Postgres
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(400, "invalid_cursor", "cursor must be a nextCursor value returned by this API")
    return moment, room_uuid_


rooms_router = Router(
    path="/rooms",
    route_handlers=[create_room, list_rooms, get_room, update_room, end_room, get_room_history],
    dependencies={
        "caller": Provide(provide_caller, sync_to_thread=False),
    },
    tags=["rooms"],
)
