"""Verifying a join ticket, as Signaling does before it runs join.lua (docs/signaling.md).

The Room Service signs tickets with Ed25519 (JWS `alg` EdDSA) and publishes its keys at
`/.well-known/jwks.json`. A ticket admits its `sub` to the room named by `room`, between `nbf` and
`exp`, once (join.lua remembers its `jti`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import jwt
import msgspec

from common.tickets.claims import ALGORITHM, AUDIENCE, DEFAULT_ISSUER, TicketClaims

# The most clock difference between the Room Service and a verifier that is forgiven: a ticket lives
# two minutes, and join.lua keeps a used ticket's mark this long past its `exp` (so it is never
# admitted twice within the leeway).
MAX_LEEWAY_SECONDS = 5

Reason = Literal[
    "malformed",  # not a compact JWS, or claims of the wrong shape
    "algorithm_not_allowed",  # `alg` other than EdDSA (none, HS*, RS*...)
    "unknown_key",  # no key of the set has its `kid`
    "bad_signature",
    "missing_claim",
    "wrong_issuer",
    "wrong_audience",
    "not_yet_valid",  # `nbf` in the future, beyond the leeway
    "expired",  # `exp` in the past, beyond the leeway
    "wrong_room",  # a ticket for another room
]


class TicketRejected(Exception):
    """The ticket admits nobody; `reason` is stable, for Signaling's logs and metrics."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason


_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


def verify_ticket(
    token: str,
    jwks: Mapping[str, Any] | jwt.PyJWKSet,
    room_id: str,
    *,
    issuer: str = DEFAULT_ISSUER,
    leeway: int = MAX_LEEWAY_SECONDS,
    now: float | None = None,
) -> TicketClaims:
    """The claims of `token` if it admits to `room_id` (canonical code) now; else raises TicketRejected.

    `jwks` is the Room Service's JWK Set (the JSON of `/.well-known/jwks.json`, or a PyJWKSet made from
    it). `now` (Unix seconds) is for tests; `leeway` at most MAX_LEEWAY_SECONDS.
    """
    if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise TicketRejected("malformed", str(exc)) from None
    # Decided before any key is looked at: a key is never used with an algorithm the ticket names.
    if header.get("alg") != ALGORITHM:
        raise TicketRejected("algorithm_not_allowed", f"alg must be {ALGORITHM}, not {header.get('alg')!r}")
    key = _key(jwks, header.get("kid"))
    try:
        # Times are checked below, against `now`; PyJWT checks the signature, iss, aud and presence.
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": _REQUIRED, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise TicketRejected("bad_signature", str(exc)) from None
    except jwt.MissingRequiredClaimError as exc:
        raise TicketRejected("missing_claim", str(exc)) from None
    except jwt.InvalidIssuerError as exc:
        raise TicketRejected("wrong_issuer", str(exc)) from None
    except jwt.InvalidAudienceError as exc:
        raise TicketRejected("wrong_audience", str(exc)) from None
    except jwt.InvalidTokenError as exc:
        raise TicketRejected("malformed", str(exc)) from None
    try:
        claims = msgspec.convert(payload, TicketClaims)
    except msgspec.ValidationError as exc:
        raise TicketRejected("malformed", str(exc)) from None
    moment = time.time() if now is None else now
    if claims.nbf > moment + leeway:
        raise TicketRejected("not_yet_valid", f"valid from {claims.nbf}")
    if claims.exp <= moment - leeway:
        raise TicketRejected("expired", f"expired at {claims.exp}")
    if claims.room != room_id:
        raise TicketRejected("wrong_room", f"the ticket is for room {claims.room}, not {room_id}")
    return claims


def _key(jwks: Mapping[str, Any] | jwt.PyJWKSet, kid: object) -> jwt.PyJWK:
    if not isinstance(kid, str):
        raise TicketRejected("unknown_key", "the ticket names no kid")
    try:
        keys = jwks if isinstance(jwks, jwt.PyJWKSet) else jwt.PyJWKSet.from_dict(dict(jwks))
    except jwt.PyJWKSetError:  # a set of no keys (this deployment issues no tickets) or none usable
        raise TicketRejected("unknown_key", f"no key {kid!r}: the key set has no usable keys") from None
    try:
        key = keys[kid]
    except KeyError:
        raise TicketRejected("unknown_key", f"no key {kid!r} in the key set") from None
    if key.algorithm_name != ALGORITHM:
        raise TicketRejected("unknown_key", f"key {kid!r} is not an {ALGORITHM} key")
    return key
