"""The claims of a verified join ticket, as Signaling hands them to join.lua (no signature needed)."""

from __future__ import annotations

import secrets
import time
import uuid

from common.tickets.claims import TicketClaims


def ticket(room_id: str, participant: str, lifetime: int = 120) -> TicketClaims:
    """The claims of a verified ticket (common/signaling/tickets.py), as join.lua is given them."""
    now = int(time.time())
    return TicketClaims(
        iss="roomservice",
        aud="signaling",
        sub=participant,
        room=room_id,
        rid=str(uuid.uuid4()),
        role="guest",
        iat=now,
        nbf=now,
        exp=now + lifetime,
        jti=secrets.token_urlsafe(16),
    )
