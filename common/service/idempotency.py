"""Idempotency-Keys on create: what a key claims, and when a retry may be answered with the first room."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import msgspec

from common.errors import IdempotencyKeyReused
from common.rooms.model import Metadata


class Claim(NamedTuple):
    """A key, and a fingerprint of what the request asked for (after defaults: an omitted limit and
    the default limit are the same request; metadata whose keys come in another order is the same)."""

    key: str
    request_hash: str


def claim_for(key: str, max_participants: int, metadata: Metadata | None = None) -> Claim:
    asked = f"maxParticipants={max_participants}".encode()
    if metadata is not None:  # without metadata, the fingerprint of keys claimed before metadata existed
        asked += b"&metadata=" + msgspec.json.encode(metadata, order="sorted")
    return Claim(key, hashlib.sha256(asked).hexdigest())


def check_replay(claim: Claim, recorded_hash: str) -> None:
    """A retry must ask for what the first request asked for; raise `IdempotencyKeyReused` otherwise."""
    if recorded_hash != claim.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
