"""A room's sessions as recorded in Postgres (`room_sessions`) and served at `GET /rooms/{roomId}/sessions`."""

from __future__ import annotations

from datetime import datetime

import msgspec

from common.rooms.events import SessionEndReason


class RecordedSession(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A span in which the room had at least one participant. Every field is in every answer: those of
    a session in progress (`endedAt`, `durationSeconds`, `endReason`) are null, and its figures are
    as of the worker's last presence pass."""

    started_at: datetime
    ended_at: datetime | None
    duration_seconds: float | None  # `endedAt` - `startedAt`, to the ms
    peak_participants: int
    distinct_participants: int
    participant_seconds: float  # time in the room summed over participants, to the ms
    end_reason: SessionEndReason | None
