"""What the API answers, and the parameters of its paths, queries and headers.

Request bodies are api/bodies.py (decoding) and api/body_docs.py (their description).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar.openapi.spec import OpenAPIType
from litestar.params import PathParameter

from api.errors import ApiError
from common.rooms.codes import INPUT_PATTERN, normalize_room_code
from common.rooms.events import RoomEvent
from common.rooms.model import DailyStats, EmptyTimeout, LiveStatus, Metadata, RoomView, Status, UnusedTimeout
from common.rooms.sessions import RecordedSession
from common.tickets.claims import Role

# -- parameters ---------------------------------------------------------------------------------


# Patterns and shapes the handlers check themselves (with error codes of their own), stated in the
# API description through `schema_extra`, which documents without making Litestar enforce.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"


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


# -- responses ----------------------------------------------------------------------------------


class PublicRoomView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A live room as anyone who knows its code sees it: without who hosts it (`hostId`, `cohostIds`),
    which only its host and co-hosts are told (`RoomView`)."""

    room_id: str
    max_participants: int
    created_at: datetime
    starts_at: datetime
    expires_at: datetime
    status: LiveStatus  # `scheduled` until `startsAt`, then `active`
    metadata: Metadata | None = None  # always in the body, null when the room has none
    # When it ends by itself: the room's rules, like its limit, for anyone about to join.
    empty_timeout_seconds: EmptyTimeout
    unused_timeout_seconds: UnusedTimeout


def public_view(view: RoomView) -> PublicRoomView:
    return PublicRoomView(
        room_id=view.room_id,
        max_participants=view.max_participants,
        created_at=view.created_at,
        starts_at=view.starts_at,
        expires_at=view.expires_at,
        status=view.status,
        metadata=view.metadata,
        empty_timeout_seconds=view.empty_timeout_seconds,
        unused_timeout_seconds=view.unused_timeout_seconds,
    )


class RoomSummary(RoomView, frozen=True, kw_only=True):
    """A room in a user's list: `scheduled` before its start, `active` until it ends, then `ended`."""

    # Wider than a live room's: a list holds ended rooms too. (msgspec lets a subclass redefine a field.)
    status: Status  # type: ignore[assignment]


class RoomPage(msgspec.Struct, frozen=True, rename="camel"):
    rooms: list[RoomSummary]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class RoomHistory(msgspec.Struct, frozen=True, rename="camel"):
    room_id: str
    events: list[RoomEvent]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class RoomSessions(msgspec.Struct, frozen=True, rename="camel"):
    room_id: str
    sessions: list[RecordedSession]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


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
