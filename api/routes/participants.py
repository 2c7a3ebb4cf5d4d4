"""The participants of a room, as its host and co-hosts see and manage them: who is in, removing one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import delete, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import PathParameter

from api.deps import changes_of, presence_of
from api.errors import ApiError, error_responses
from api.openapi import CALLER
from api.schemas import RoomCode, room_code

# Who a participant is to Signaling: the `sub` of the ticket it joined with (a user id), or whatever id
# Signaling joins it under; letters, digits and `._:@-`, up to 128 characters.
PARTICIPANT_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
_PARTICIPANT_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-")

ParticipantId = Annotated[
    str,
    PathParameter(
        description=(
            "The participant as Signaling names it in the participant set: a ticket's `sub`, the user's id. A UUID "
            "is taken in its canonical lower-case form, as tickets write it."
        ),
        schema_extra={"pattern": PARTICIPANT_ID_PATTERN},
    ),
]


def participant_id_of(raw: str) -> str:
    """The participant id as join.lua sees it; 400 if it cannot be one."""
    if not 1 <= len(raw) <= 128 or not set(raw) <= _PARTICIPANT_CHARACTERS:
        raise ApiError(400, "invalid_participant_id", "participantId must be 1 to 128 letters, digits or ._:@-")
    try:
        return str(uuid.UUID(raw)) if len(raw) == 36 else raw
    except ValueError:
        return raw


class ParticipantView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    participant_id: str
    joined_at: datetime | None  # null for one admitted before the service kept join times
    heartbeat_expires_at: datetime  # a member whose heartbeat lapses is gone at this moment


class ParticipantsView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The room's live participants, earliest joined first, and how many it admits."""

    participants: list[ParticipantView]
    count: int
    max_participants: int


@get(
    "/{room_id:str}/participants",
    summary="Who is in a room now (host or co-host)",
    description=(
        "The room's live participants as Signaling's scripts keep them in Redis (a heartbeat not yet expired), "
        "earliest joined first. Redis alone knows them: while it is unavailable, 503 `presence_unavailable`."
    ),
    responses=error_responses(400, 401, 403, 404, 410, 503),
    security=CALLER,
)
async def list_participants(caller: NamedDependency[UUID], state: State, room_id: RoomCode) -> ParticipantsView:
    found = await presence_of(state).participants(room_code(room_id), caller)
    return ParticipantsView(
        participants=[
            ParticipantView(
                participant_id=p.participant_id, joined_at=p.joined_at, heartbeat_expires_at=p.heartbeat_expires_at
            )
            for p in found.present
        ],
        count=len(found.present),
        max_participants=found.room.max_participants,
    )


@delete(
    "/{room_id:str}/participants/{participant_id:str}",
    summary="Remove a participant from a room (host or co-host)",
    description=(
        "Takes the participant out of the room at once and bars them until the room ends: join.lua answers them "
        "`removed`, with or without a ticket, and `POST /rooms/{roomId}/tickets` answers them 403 "
        "`removed_from_room`. A `participant.removed` event goes on the stream, for Signaling to disconnect them. "
        "Someone not present may be barred too; barring someone barred already changes nothing. Nobody may remove "
        "the room's host (403). Counted against the caller's `ROOMS_CHANGE_LIMIT_PER_MINUTE` (429 past it)."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 410, 429, 503),
    security=CALLER,
)
async def remove_participant(
    caller: NamedDependency[UUID],
    state: State,
    room_id: RoomCode,
    participant_id: ParticipantId,
) -> None:
    await changes_of(state).remove_participant(room_code(room_id), caller, participant_id_of(participant_id))
