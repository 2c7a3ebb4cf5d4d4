"""Idempotency-Keys on create: what a key claims, and when a retry may be answered with the first room."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from common.errors import IdempotencyKeyReused


class Claim(NamedTuple):
    """A key, and a fingerprint of what the request asked for (after defaults: an omitted limit and
    the default limit are the same request)."""

    key: str
    request_hash: str


def claim_for(key: str, max_participants: int) -> Claim:
    return Claim(key, hashlib.sha256(f"maxParticipants={max_participants}".encode()).hexdigest())


def check_replay(claim: Claim, recorded_hash: str) -> None:
    """A retry must ask for what the first request asked for; raise `IdempotencyKeyReused` otherwise."""
    if recorded_hash != claim.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
