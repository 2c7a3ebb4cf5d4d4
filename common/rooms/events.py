"""Room events: their shape and their encoding as entries of the Redis stream `rooms:events`.

The contract for consumers is docs/events.md; its JSON Schema is generated from these structs
(`python -m common.rooms.events`). Schema evolution: fields are added with defaults, never renamed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from common.rooms.model import JSON_ENCODER, Room

EventType = Literal[
    "room.created",
    "room.started",
    "room.updated",
    "room.ended",
    "participant.removed",
    "session.started",
    "session.ended",
]
# Why a session ended: its last participant left (or its heartbeat lapsed); the room ended with people
# in it; Redis lost what it kept of it (a restart without its data): it ended at the last moment seen.
SessionEndReason = Literal["empty", "room_ended", "lost"]
# Why a room ended: its lifetime ran out; its host or a co-host ended it; the worker ended it, empty for
# its emptyTimeoutSeconds after its last participant left, or unused: nobody joined within its
# unusedTimeoutSeconds of its start.
EndReason = Literal["expired", "deleted", "empty", "unused"]

# W3C Trace Context: version 00, trace id, parent span id, flags, in lower-case hex.
TraceParent = Annotated[
    str,
    msgspec.Meta(
        pattern="^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        description="W3C traceparent of the request or job that made the change; absent while tracing is off.",
    ),
]


class SessionData(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A session of the room (`session.started`, `session.ended`): a span with at least one participant.
    The figures are exact to the ms of Redis TIME; those of `session.started` are its first moment's."""

    started_at: datetime
    peak_participants: int
    distinct_participants: int
    participant_seconds: float  # time in the room summed over participants, lapsed heartbeats to their expiry
    ended_at: datetime | None = None  # `session.ended` only, as are the two below
    duration_seconds: float | None = None
    end_reason: SessionEndReason | None = None


class RoomEventData(Room, frozen=True, kw_only=True, omit_defaults=True):
    """The room object after the change (as cached under `room:{roomId}`), and why a room ended.

    On the stream it is the JSON the database made (room_event_data), which may hold fields a newer
    release added: consumers ignore what they do not know.
    """

    reason: EndReason | None = None
    # `participant.removed`: whom (also the last of `removedIds`).
    participant_id: str | None = None
    # `session.started` and `session.ended`: which session, and (ended) its figures.
    session: SessionData | None = None


class RoomEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One change of one room.

    `version` is the room's revision after the change: 1 for `room.created`, one more for each later
    change. A consumer that has applied version n of a room ignores any event for it with version <= n.
    """

    type: EventType
    event_id: UUID
    room_id: str
    occurred_at: datetime
    version: int
    data: RoomEventData
    traceparent: TraceParent | None = None  # omitted when None, in JSON and on the stream

    @property
    def ends_room(self) -> bool:
        """After this event the room is gone; before it, `data` is the room to cache."""
        return self.type == "room.ended"

    @property
    def changes_room(self) -> bool:
        """Whether this is a revision of the room (its `version` one more than the last). A session's
        events are not: they carry the room as it is, at its current version."""
        return not self.type.startswith("session.")


class InvalidEntry(ValueError):
    """A stream entry that is not a room event this version understands."""


_DATA_DECODER = msgspec.json.Decoder(RoomEventData)
_TIMESTAMP = msgspec.json.Decoder(datetime)


def encode_data(event: RoomEvent) -> bytes:
    """The typed data encoded again: only the fields this code knows (the stream carries the
    database's JSON instead: `stream_fields`)."""
    return JSON_ENCODER.encode(event.data)


def decode_data(raw: bytes | str) -> RoomEventData:
    """The `data` of an event, from its JSON (stream field or outbox column)."""
    return _DATA_DECODER.decode(raw)


def stream_fields(event: RoomEvent, data: str | bytes) -> dict[str, str | bytes]:
    """The flat string fields of a stream entry; `traceparent` is there only when the event has one.

    `data` is the JSON of the event's data as the database made it (the outbox row's): sent as it
    is, never `event.data` encoded again, which would drop the fields this code does not know.
    """
    fields: dict[str, str | bytes] = {
        "type": event.type,
        "eventId": str(event.event_id),
        "roomId": event.room_id,
        "occurredAt": JSON_ENCODER.encode(event.occurred_at)[1:-1].decode(),
        "version": str(event.version),
        "data": data,
    }
    if event.traceparent is not None:
        fields["traceparent"] = event.traceparent
    return fields


def from_stream_fields(fields: dict[bytes, bytes]) -> RoomEvent:
    """Decode a stream entry; raises `InvalidEntry` for anything malformed."""
    try:
        text = {key.decode(): value for key, value in fields.items()}
        return RoomEvent(
            type=msgspec.convert(text["type"].decode(), EventType),
            event_id=UUID(text["eventId"].decode()),
            room_id=text["roomId"].decode(),
            occurred_at=_TIMESTAMP.decode(b'"' + text["occurredAt"] + b'"'),
            version=int(text["version"]),
            data=decode_data(text["data"]),
            traceparent=text["traceparent"].decode() if "traceparent" in text else None,
        )
    except (KeyError, ValueError, UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidEntry(f"not a room event: {exc}") from exc


def json_schema() -> dict[str, object]:
    """JSON Schema of a room event (the decoded form of a stream entry), for docs/events.md."""
    # Through JSON and back: a default of `()` is a tuple in the schema msgspec gives, `[]` in JSON.
    schema: dict[str, object] = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(RoomEvent)))
    return schema


if __name__ == "__main__":
    print(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode())  # noqa: T201
