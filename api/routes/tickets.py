"""Join tickets: issued per room to the caller, and the public keys that verify them."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import MediaType, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from api.deps import tickets_of
from api.errors import NotStartedBody, error_responses
from api.openapi import CALLER
from api.schemas import JwkSet, RoomCode, TicketView, room_code

# Verifiers cache the key set this long (their fetch is a network call at each join otherwise); a
# key rotated in is published at least this long before it signs, so every verifier knows it.
JWKS_MAX_AGE_SECONDS = 300


@post(
    "/{room_id:str}/tickets",
    status_code=201,
    summary="A join ticket for a live room",
    description=(
        "A signed, short-lived ticket (a JWT, EdDSA) admitting the caller to this room once; Signaling "
        "verifies it with the keys of `/.well-known/jwks.json`. `role` is `host` for the room's host, `cohost` "
        "for one of its co-hosts, else `guest`. Expires after ROOMS_TICKET_TTL_SECONDS, never after the room ends. "
        "A room booked ahead issues none before it opens to joins, `ROOMS_EARLY_JOIN_SECONDS` before `startsAt`: "
        "409 `room_not_started`, with `startsAt` and a `Retry-After` of the seconds until it opens."
    ),
    responses={
        **error_responses(400, 401, 403, 404, 410, 429, 503),  # their headers: api/openapi.py
        409: ResponseSpec(
            NotStartedBody,
            description="The room does not admit joins yet (`room_not_started`).",
            generate_examples=False,
        ),
    },
    security=CALLER,
)
async def issue_ticket(caller: NamedDependency[UUID], state: State, room_id: RoomCode) -> Response[TicketView]:
    issued = await tickets_of(state).issue(room_code(room_id), caller)
    view = TicketView(ticket=issued.ticket, expires_at=issued.expires_at, role=issued.role)
    # A credential: no cache between the caller and here may keep it.
    return Response(view, status_code=201, headers={"Cache-Control": "no-store"})


def jwks_body(jwks: dict[str, list[dict[str, str]]]) -> bytes:
    """The JWK Set as served: encoded once, when the app is made."""
    return msgspec.json.encode(jwks)


@get(
    "/.well-known/jwks.json",
    summary="The public keys of join tickets (a JWK Set)",
    description="Ed25519 keys (RFC 8037) by `kid`; an empty set where no ticket keys are configured.",
    tags=["tickets"],
    responses={200: ResponseSpec(JwkSet, description="The key set.", generate_examples=False)},
)
async def jwks(state: State) -> Response[bytes]:
    return Response(
        state.jwks,
        media_type=MediaType.JSON,
        headers={"Cache-Control": f"max-age={JWKS_MAX_AGE_SECONDS}"},
    )
