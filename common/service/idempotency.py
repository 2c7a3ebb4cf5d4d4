"""Idempotency-Keys on create: what a key claims, and when a retry may be answered with the first room."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec

from common.errors import IdempotencyKeyReused
from common.rooms.model import Metadata


class Claim(NamedTuple):
    """A key, and a fingerprint of what the request asked for (after defaults: an omitted limit and
    the default limit are the same request; metadata whose keys come in another order is the same, and
    so are co-hosts in another order)."""

    key: str
    request_hash: str


def claim_for(
    key: str,
    max_participants: int,
    *,
    metadata: Metadata | None = None,
    cohost_ids: Sequence[UUID] = (),
    schedule: tuple[datetime | None, datetime | None] = (None, None),
    timeouts: tuple[int | None, int | None] = (None, None),
) -> Claim:
    """The claim of `key` for a create asking for these options; `timeouts`: the empty and the unused
    timeout as asked (None: not asked, the deployment's default)."""
    asked = f"maxParticipants={max_participants}".encode()
    # Each option added later joins the fingerprint only when given: a request without it has the
    # fingerprint of keys claimed before it existed.
    if metadata is not None:
        asked += b"&metadata=" + msgspec.json.encode(metadata, order="sorted")
    if cohost_ids:  # a set of users: in any order the same request
        asked += b"&cohostIds=" + ",".join(sorted(map(str, cohost_ids))).encode()
    # Moments, not their spelling: the same instant in another offset is the same request.
    starts_at, expires_at = schedule
    if starts_at is not None:
        asked += f"&startsAt={starts_at.timestamp()!r}".encode()
    if expires_at is not None:
        asked += f"&expiresAt={expires_at.timestamp()!r}".encode()
    # As asked, not as defaulted: a retry is the same request when the deployment's defaults changed since.
    empty, unused = timeouts
    if empty is not None:
        asked += f"&emptyTimeoutSeconds={empty}".encode()
    if unused is not None:
        asked += f"&unusedTimeoutSeconds={unused}".encode()
    return Claim(key, hashlib.sha256(asked).hexdigest())


def check_replay(claim: Claim, recorded_hash: str) -> None:
    """A retry must ask for what the first request asked for; raise `IdempotencyKeyReused` otherwise."""
    if recorded_hash != claim.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
