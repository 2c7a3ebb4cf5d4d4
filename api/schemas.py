"""What goes in and out of the API: request bodies and their decoding, path parameters, response bodies.

Bodies are decoded here rather than by Litestar, whose signature model converts leniently ("4" -> 4):
a client that sends the wrong type should hear so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import msgspec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import PathParameter
from msgspec import UNSET, UnsetType

from api.errors import ApiError
from common.rooms.codes import INPUT_PATTERN, normalize_room_code
from common.rooms.events import RoomEvent
from common.rooms.model import MAX_COHOSTS, DailyStats, Metadata, RoomView
from common.tickets.claims import Role

T = TypeVar("T")

_LIMIT_NOTE = "Between 2 and the configured limit (ROOMS_MAX_PARTICIPANTS_LIMIT)."

# -- requests -----------------------------------------------------------------------------------

# Patterns and shapes the handlers check themselves (with error codes of their own), stated in the
# API description through `schema_extra`, which documents without making Litestar enforce.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
# A `nextCursor`: base64url (padding optional) of a page's keyset position. Only a value this API
# returned is one, which no pattern can say; the parameter's description does.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+={0,2}$"


def optional_string(**keywords: Any) -> dict[str, Any]:
    """`schema_extra` of an optional query or header parameter: a string, or absent. Litestar describes
    `str | None` as string-or-null, but a query or a header has no null: it is sent or it is not."""
    return {"one_of": None, "type": OpenAPIType.STRING, **keywords}


RoomCode = Annotated[
    str,
    PathParameter(
        description="The room code, e.g. `abc-defg-hij` (any case, dashes optional).",
        schema_extra={"pattern": INPUT_PATTERN},
    ),
]


def room_code(raw: str) -> str:
    """The canonical form of a `RoomCode` path parameter; 400 if it cannot be one."""
    code = normalize_room_code(raw)
    if code is None:
        raise ApiError(400, "invalid_room_id", "roomId must be ten letters like abc-defg-hij")
    return code


def _whole(number: float | UnsetType | None) -> None:
    """`maxParticipants` is a JSON Schema `integer`, which counts `3.0` as 3: a number with no fraction."""
    if isinstance(number, float) and not number.is_integer():
        raise ValueError("maxParticipants must be a whole number")  # msgspec makes it a ValidationError


# How deep metadata may nest (the metadata object itself is level 1): a bound of the service's own, far
# below where decoding itself would give up.
METADATA_MAX_DEPTH = 32
# Postgres's jsonb cannot hold the NUL character, in a key or a string.
NO_NUL_PATTERN = r"^[^\x00]*$"
_METADATA_RULES = (
    f"No string or key may contain the NUL character (\\u0000), and it may nest at most {METADATA_MAX_DEPTH} levels."
)


def _check_metadata(metadata: Metadata | UnsetType | None) -> None:
    """What the stores cannot hold, or the service does not take, refused as a bad body (400) before
    any write: NUL characters, and nesting deeper than METADATA_MAX_DEPTH. Level by level, no recursion."""
    level: list[dict[str, Any] | list[Any]] = [metadata] if isinstance(metadata, dict) else []
    depth = 0
    while level:
        depth += 1
        if depth > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata must nest at most {METADATA_MAX_DEPTH} levels")
        deeper: list[dict[str, Any] | list[Any]] = []
        for container in level:
            if isinstance(container, dict):
                if any("\x00" in key for key in container):
                    raise ValueError("metadata keys must not contain the NUL character (\\u0000)")
                children: Any = container.values()
            else:
                children = container
            for child in children:
                if isinstance(child, str):
                    if "\x00" in child:
                        raise ValueError("metadata strings must not contain the NUL character (\\u0000)")
                elif isinstance(child, (dict, list)):
                    deeper.append(child)
        level = deeper


# A user id in a body: a UUID in its hyphenated form, any case, as the schema states it (msgspec's UUID
# would also take 32 bare hex digits, which `format: uuid` does not).
UUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
# The same for msgspec, which searches with Python's `re`, where `$` also matches before a final
# newline: `\Z` ends the string. (UUID_PATTERN is the one JSON Schema and ECMA regexes read.)
UserId = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN.removesuffix("$") + r"\Z")]
# Up to MAX_COHOSTS; that none is named twice or is the host is the service's check (400 invalid_cohosts).
CohostIds = Annotated[tuple[UserId, ...], msgspec.Meta(max_length=MAX_COHOSTS)]


def user_ids(ids: tuple[str, ...]) -> tuple[UUID, ...]:
    return tuple(UUID(user_id) for user_id in ids)


class CreateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Optional body of `POST /rooms`."""

    max_participants: int | float | None = None
    metadata: Metadata | None = None
    cohost_ids: CohostIds = ()

    def __post_init__(self) -> None:
        _whole(self.max_participants)
        _check_metadata(self.metadata)


class UpdateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Body of `PATCH /rooms/{roomId}`: what to change, at least one thing. Absent is UNSET
    (unchanged); a `null` metadata clears it, as `[]` clears the co-hosts."""

    max_participants: int | float | UnsetType = UNSET
    metadata: Metadata | UnsetType | None = UNSET
    host_id: UserId | UnsetType = UNSET
    cohost_ids: CohostIds | UnsetType = UNSET

    def __post_init__(self) -> None:
        if all(value is UNSET for value in (self.max_participants, self.metadata, self.host_id, self.cohost_ids)):
            raise ValueError("the body must set at least one of maxParticipants, metadata, hostId and cohostIds")
        _whole(self.max_participants)
        _check_metadata(self.metadata)


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
    except RecursionError:  # only metadata may nest: decoding gives up far beyond its bound
        raise ApiError(400, "invalid_body", f"metadata must nest at most {METADATA_MAX_DEPTH} levels") from None


def decode_optional_body(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T | None:
    """An optional body: None when the request has none."""
    if not raw.strip():
        return None
    return decode_body(raw, decoder)


# Any JSON value inside metadata, as far as JSON Schema can say what the server takes: no NUL in a string
# or a key (each keyword applies to its own type only). Among the components (api/openapi.py), as it
# refers to itself.
METADATA_VALUE = "MetadataValue"
_METADATA_VALUE_REF = Reference(ref=f"#/components/schemas/{METADATA_VALUE}")
METADATA_VALUE_SCHEMA = Schema(
    type=[
        OpenAPIType.STRING,
        OpenAPIType.NUMBER,
        OpenAPIType.BOOLEAN,
        OpenAPIType.NULL,
        OpenAPIType.ARRAY,
        OpenAPIType.OBJECT,
    ],
    pattern=NO_NUL_PATTERN,
    items=_METADATA_VALUE_REF,
    property_names=Schema(type=OpenAPIType.STRING, pattern=NO_NUL_PATTERN),
    additional_properties=_METADATA_VALUE_REF,
    description="A value inside room metadata.",
)


def metadata_note(max_bytes: int) -> str:
    """The description of `metadata` in a body: JSON Schema cannot bound an encoded size, so in words."""
    return (
        f"A JSON object of at most {max_bytes} bytes encoded as compact JSON (ROOMS_METADATA_MAX_BYTES); "
        f"larger answers 413 `metadata_too_large`. {_METADATA_RULES}"
    )


def _user_id_schema(description: str) -> Schema:
    return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID, pattern=UUID_PATTERN, description=description)


def _cohosts_schema(description: str) -> Schema:
    return Schema(
        type=OpenAPIType.ARRAY,
        items=_user_id_schema("A co-host's user id."),
        max_items=MAX_COHOSTS,
        unique_items=True,
        description=(
            f"Up to {MAX_COHOSTS} users who may change the participant limit and the metadata and end the room. "
            "None may be named twice (compared as UUIDs) and none may be the host: either answers 400 "
            f"`invalid_cohosts`. {description}"
        ),
    )


def room_body(*, create: bool) -> type[Operation]:
    """An OpenAPI operation documenting the body a handler decodes itself: `{"maxParticipants": n,
    "metadata": {...}, "cohostIds": [...]}` (and on a change `hostId`), when creating optional as a
    whole, when changing at least one field. The bounds that are settings are filled in by api/openapi.py."""

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            metadata = Schema(
                type=[OpenAPIType.OBJECT, OpenAPIType.NULL],
                property_names=Schema(type=OpenAPIType.STRING, pattern=NO_NUL_PATTERN),
                additional_properties=_METADATA_VALUE_REF,
                description=(
                    "Absent or null: none."
                    if create
                    else "Replaces the room's metadata; null clears it; absent: unchanged."
                ),
            )
            limit = Schema(
                # When creating, `null` asks for the default, as leaving it out does.
                type=[OpenAPIType.INTEGER, OpenAPIType.NULL] if create else OpenAPIType.INTEGER,
                minimum=2,
                description=f"{_LIMIT_NOTE} Absent or null: the default."
                if create
                else f"{_LIMIT_NOTE} Absent: unchanged.",
            )
            properties: dict[str, Schema | Reference] = {"maxParticipants": limit, "metadata": metadata}
            if create:
                properties["cohostIds"] = _cohosts_schema("Absent: none.")
            else:
                properties["cohostIds"] = _cohosts_schema(
                    "Replaces the co-hosts; `[]` removes them; absent: unchanged. Only the host may change them (403)."
                )
                properties["hostId"] = _user_id_schema(
                    "Hands the room to this user, who leaves the co-hosts if among them; the caller stays on as a "
                    "co-host only if named in `cohostIds`. Only the host may (403)."
                )
            schema = Schema(
                # An optional body may also be JSON `null`, which means no options, as no body does.
                type=[OpenAPIType.OBJECT, OpenAPIType.NULL] if create else OpenAPIType.OBJECT,
                properties=properties,
                # A change must change something: one field at least.
                min_properties=None if create else 1,
                additional_properties=False,
            )
            self.request_body = RequestBody(
                required=not create,
                description="Room options; the body may be omitted, or be `null`." if create else "What to change.",
                content={"application/json": OpenAPIMediaType(schema=schema)},
            )

    return _Documented


# -- responses ----------------------------------------------------------------------------------


class RoomSummary(RoomView, frozen=True, kw_only=True):
    """A room in a user's list: `active` while it may be joined, else `ended`."""

    status: Literal["active", "ended"]


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


# A compact JWS: header, payload and signature, each base64url without padding.
TICKET_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"


class TicketView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A join ticket, for the caller to hand to Signaling when joining (docs/signaling.md)."""

    ticket: Annotated[str, msgspec.Meta(pattern=TICKET_PATTERN)]
    expires_at: datetime  # the ticket's `exp`: at most ROOMS_TICKET_TTL_SECONDS away, never past the room's end
    role: Role


class PublicJwk(msgspec.Struct, frozen=True, kw_only=True):
    """An Ed25519 public key as a JWK (RFC 8037); `kid` is its RFC 7638 thumbprint."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{43}$")]
    kid: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{43}$")]
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class JwkSet(msgspec.Struct, frozen=True):
    """The keys that sign join tickets: the one signing now and those rotated in or out beside it."""

    keys: list[PublicJwk]
