"""What goes in and out of the API: request bodies and their decoding, path parameters, response bodies.

Bodies are decoded here rather than by Litestar, whose signature model converts leniently ("4" -> 4):
a client that sends the wrong type should hear so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, TypeVar

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import PathParameter

from api.errors import ApiError
from common.rooms.codes import normalize_room_code
from common.rooms.events import RoomEvent
from common.rooms.model import DailyStats, RoomStatus, RoomView

T = TypeVar("T")

_LIMIT_NOTE = "Between 2 and the configured limit (ROOMS_MAX_PARTICIPANTS_LIMIT)."

# -- requests -----------------------------------------------------------------------------------

RoomCode = Annotated[str, PathParameter(description="The room code, e.g. `abc-defg-hij` (any case, dashes optional).")]


def room_code(raw: str) -> str:
    """The canonical form of a `RoomCode` path parameter; 400 if it cannot be one."""
    code = normalize_room_code(raw)
    if code is None:
        raise ApiError(400, "invalid_room_id", "roomId must be ten letters like abc-defg-hij")
    return code


class CreateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Optional body of `POST /rooms`."""

    max_participants: int | None = None


class UpdateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Body of `PATCH /rooms/{roomId}`."""

    max_participants: int


CREATE_ROOM = msgspec.json.Decoder(CreateRoomRequest | None)  # JSON `null` is no options, as no body is
UPDATE_ROOM = msgspec.json.Decoder(UpdateRoomRequest)


def decode_body(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """A required body; 400 with msgspec's precise message if it is not what `decoder` wants."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_body", f"malformed JSON: {exc}") from None


def decode_optional_body(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T | None:
    """An optional body: None when the request has none."""
    if not raw.strip():
        return None
    return decode_body(raw, decoder)


def limit_body(*, required: bool) -> type[Operation]:
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


class DailyStatsPage(msgspec.Struct, frozen=True, rename={"first": "from", "last": "to"}):
    first: date
    last: date
    days: list[DailyStats]
