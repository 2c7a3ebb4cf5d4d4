"""Room events: the entries of the Redis stream `rooms:events`, their shape and their encoding.

The contract for consumers is docs/events.md; its JSON Schema is generated from these structs
(`python -m common.events`). Schema evolution: fields are added with defaults, never renamed.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg
import msgspec

from common.rooms import Room

EventType = Literal["room.created", "room.updated", "room.ended"]
EndReason = Literal["expired", "deleted"]


class RoomEventData(Room, frozen=True, kw_only=True, omit_defaults=True):
    """The room object after the change (as cached under `room:{roomId}`), and why a room ended."""

    reason: EndReason | None = None


class RoomEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
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


class InvalidEntry(ValueError):
    """A stream entry that is not a room event this version understands."""


_ENCODER = msgspec.json.Encoder()
_DATA_DECODER = msgspec.json.Decoder(RoomEventData)
_TIMESTAMP = msgspec.json.Decoder(datetime)


def encode_data(event: RoomEvent) -> bytes:
    return _ENCODER.encode(event.data)


def stream_fields(event: RoomEvent) -> dict[str, str | bytes]:
    """The flat string fields of a stream entry; `data` holds the JSON of the room object."""
    return {
        "type": event.type,
        "eventId": str(event.event_id),
        "roomId": event.room_id,
        "occurredAt": _ENCODER.encode(event.occurred_at)[1:-1].decode(),
        "version": str(event.version),
        "data": encode_data(event),
    }


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
            data=_DATA_DECODER.decode(text["data"]),
        )
    except (KeyError, ValueError, UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidEntry(f"not a room event: {exc}") from exc


def from_outbox(row: asyncpg.Record) -> RoomEvent:
    """The event an outbox row (`room_events`) describes."""
    return RoomEvent(
        type=row["type"],
        event_id=row["event_id"],
        room_id=row["room_id"],
        occurred_at=row["occurred_at"],
        version=row["version"],
        data=_DATA_DECODER.decode(row["data"]),
    )


def retention_floor(retention_seconds: int) -> str:
    """The stream id before which entries may be trimmed (`XADD ... MINID ~ <id>`)."""
    return f"{int((time.time() - retention_seconds) * 1000)}-0"


def json_schema() -> dict[str, object]:
    """JSON Schema of a room event (the decoded form of a stream entry), for docs/events.md."""
    schema: dict[str, object] = msgspec.json.schema(RoomEvent)
    return schema


if __name__ == "__main__":
    print(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode())  # noqa: T201
