"""What a join ticket says: its claims, shared by the issuer (common/service/tickets.py) and the
verifier Signaling runs (common/signaling/tickets.py). Part of the contract in docs/signaling.md."""

from __future__ import annotations

from typing import Literal

import msgspec

# Who a ticket is for: Signaling refuses a ticket whose `aud` is anything else.
AUDIENCE = "signaling"
DEFAULT_ISSUER = "roomservice"
# The one signature algorithm tickets use and verifiers accept: Ed25519 (RFC 8037).
ALGORITHM = "EdDSA"

# What the holder is in the room: its host, a co-host the host named, or anyone else.
Role = Literal["host", "cohost", "guest"]


class TicketClaims(msgspec.Struct, frozen=True, kw_only=True):
    """The claims of a ticket, by their JWT names. Times are Unix seconds."""

    iss: str
    aud: str
    sub: str  # the user the ticket admits: Signaling's participant id
    room: str  # the room code (canonical), the room the ticket admits to
    rid: str  # the room's internal id (`id` of the room object in Redis)
    role: Role
    iat: int
    nbf: int
    exp: int
    jti: str  # unique per ticket: join.lua admits with it once
