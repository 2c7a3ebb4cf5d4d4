"""The room event stream (`rooms:events` by default): how events are appended and how long they stay."""

from __future__ import annotations

import time
from collections.abc import Sequence

from common.redis.client import AnyPipeline
from common.rooms.events import RoomEvent, stream_fields


def retention_floor(retention_seconds: int) -> str:
    """The stream id before which entries may be trimmed (`XADD ... MINID ~ <id>`)."""
    return f"{int((time.time() - retention_seconds) * 1000)}-0"


class EventStream:
    """Appends room events to the stream, trimming what is older than the retention."""

    def __init__(self, name: str, retention_seconds: int) -> None:
        self._name = name
        self._retention = retention_seconds

    def queue_append(self, pipe: AnyPipeline, events: Sequence[RoomEvent]) -> None:
        floor = retention_floor(self._retention)
        for event in events:
            pipe.xadd(self._name, stream_fields(event), minid=floor, approximate=True)  # type: ignore[arg-type]
