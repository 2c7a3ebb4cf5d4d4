"""The rooms resource: create, validate, list, change and end rooms."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import MediaType, Request, Response, delete, get, patch, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter

from api.deps import client_of, service_of
from api.errors import ApiError, error_responses
from api.schemas import (
    CREATE_ROOM,
    UPDATE_ROOM,
    RoomCode,
    RoomPage,
    RoomSummary,
    decode_body,
    decode_optional_body,
    limit_body,
    room_code,
)
from common.rooms.model import JSON_ENCODER, RoomStatus, RoomView, to_view

_MAX_PAGE = 100


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
    operation_class=limit_body(required=False),
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
    options = decode_optional_body(await request.body(), CREATE_ROOM)
    if idempotency_key is not None and not _valid_key(idempotency_key):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    max_participants = options.max_participants if options else None
    room, new = await service_of(state).create(caller, max_participants, idempotency_key)
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
    found = await service_of(state).host_rooms(caller, status, limit + 1, _decode_cursor(cursor) if cursor else None)
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
    responses={200: ResponseSpec(RoomView, description="The live room."), **error_responses(400, 404, 410, 429, 503)},
)
async def get_room(request: Request[Any, Any, Any], room_id: RoomCode) -> Response[bytes]:
    view = await service_of(request.app.state).view(room_code(room_id), partial(client_of, request))
    # Encoded here: a struct handed to Litestar to encode costs the busiest route about a tenth of its
    # CPU (docs/performance.md). The body is the same.
    return Response(JSON_ENCODER.encode(view), media_type=MediaType.JSON)


@patch(
    "/{room_id:str}",
    summary="Change a room's participant limit (host only)",
    description="Signaling applies the new limit from the next join; participants already in stay.",
    responses=error_responses(400, 401, 403, 404, 410, 413, 422, 503),
    operation_class=limit_body(required=True),
)
async def update_room(
    request: Request[Any, Any, Any],
    caller: NamedDependency[UUID],
    state: State,
    room_id: RoomCode,
) -> RoomView:
    code = room_code(room_id)
    body = decode_body(await request.body(), UPDATE_ROOM)
    return to_view(await service_of(state).set_max_participants(code, caller, body.max_participants))


@delete(
    "/{room_id:str}",
    summary="End a room (host only)",
    description="Ends the room for everyone: it answers 410 from then on. Ending it again changes nothing.",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def end_room(caller: NamedDependency[UUID], state: State, room_id: RoomCode) -> None:
    await service_of(state).end(room_code(room_id), caller)


HANDLERS = [create_room, list_rooms, get_room, update_room, end_room]


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
