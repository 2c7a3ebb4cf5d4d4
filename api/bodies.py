"""Request bodies of the rooms resource and their decoding.

Bodies are decoded here rather than by Litestar, whose signature model converts leniently ("4" -> 4):
a client that sends the wrong type should hear so. Their description in the API is api/body_docs.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from api.errors import ApiError
from common.rooms.model import MAX_COHOSTS, Metadata
from common.service.checks import Timeouts
from common.settings import MAX_PRESENCE_TIMEOUT_SECONDS

T = TypeVar("T")


def _whole(number: float | UnsetType | None, name: str) -> None:
    """`maxParticipants` and the timeouts are JSON Schema `integer`s, which count `3.0` as 3: a number
    with no fraction."""
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"{name} must be a whole number")  # msgspec makes it a ValidationError


# How deep metadata may nest (the metadata object itself is level 1): a bound of the service's own, far
# below where decoding itself would give up.
METADATA_MAX_DEPTH = 32
# Postgres's jsonb cannot hold the NUL character, in a key or a string.
NO_NUL_PATTERN = r"^[^\x00]*$"
METADATA_RULES = (
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


# A moment in a body: RFC 3339, with its offset (`Z` or `+01:00`): a time without one names no instant.
Moment = Annotated[datetime, msgspec.Meta(tz=True)]

# A presence timeout in a body: whole seconds, 0 .. MAX_PRESENCE_TIMEOUT_SECONDS (0: never); a float
# without a fraction too, as for the limit. Out of bounds or not a number: 400, naming the field.
TimeoutSeconds = (
    Annotated[int, msgspec.Meta(ge=0, le=MAX_PRESENCE_TIMEOUT_SECONDS)]
    | Annotated[float, msgspec.Meta(ge=0, le=MAX_PRESENCE_TIMEOUT_SECONDS)]
)


def timeouts(empty: float | UnsetType, unused: float | UnsetType) -> Timeouts:
    """The timeouts a body asks for, None for those it leaves out."""
    return Timeouts(None if empty is UNSET else int(empty), None if unused is UNSET else int(unused))


def user_ids(ids: tuple[str, ...]) -> tuple[UUID, ...]:
    return tuple(UUID(user_id) for user_id in ids)


class CreateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Optional body of `POST /rooms`."""

    max_participants: int | float | None = None
    metadata: Metadata | None = None
    cohost_ids: CohostIds = ()
    starts_at: Moment | None = None
    expires_at: Moment | None = None
    # Absent: the deployment's (ROOMS_EMPTY_TIMEOUT_SECONDS, ROOMS_UNUSED_TIMEOUT_SECONDS); never null.
    empty_timeout_seconds: TimeoutSeconds | UnsetType = UNSET
    unused_timeout_seconds: TimeoutSeconds | UnsetType = UNSET

    def __post_init__(self) -> None:
        _whole(self.max_participants, "maxParticipants")
        _whole(self.empty_timeout_seconds, "emptyTimeoutSeconds")
        _whole(self.unused_timeout_seconds, "unusedTimeoutSeconds")
        _check_metadata(self.metadata)


class UpdateRoomRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Body of `PATCH /rooms/{roomId}`: what to change, at least one thing. Absent is UNSET
    (unchanged); a `null` metadata clears it, as `[]` clears the co-hosts."""

    max_participants: int | float | UnsetType = UNSET
    metadata: Metadata | UnsetType | None = UNSET
    host_id: UserId | UnsetType = UNSET
    cohost_ids: CohostIds | UnsetType = UNSET
    starts_at: Moment | UnsetType = UNSET
    expires_at: Moment | UnsetType = UNSET
    empty_timeout_seconds: TimeoutSeconds | UnsetType = UNSET
    unused_timeout_seconds: TimeoutSeconds | UnsetType = UNSET

    def __post_init__(self) -> None:
        if all(getattr(self, field) is UNSET for field in self.__struct_fields__):
            raise ValueError(
                "the body must set at least one of maxParticipants, metadata, hostId, cohostIds, startsAt, "
                "expiresAt, emptyTimeoutSeconds and unusedTimeoutSeconds"
            )
        _whole(self.max_participants, "maxParticipants")
        _whole(self.empty_timeout_seconds, "emptyTimeoutSeconds")
        _whole(self.unused_timeout_seconds, "unusedTimeoutSeconds")
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
