"""The room event stream (`rooms:events` by default): how events are appended and how long they stay."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from redis.exceptions import ResponseError

from common.redis.client import AnyPipeline, RedisClient
from common.redis.keys import dead_letter_stream
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


class StreamState(NamedTuple):
    """How far the stream's consumers are, for the worker's metrics."""

    length: int  # entries in the stream (within the retention)
    dead_letters: int  # entries in the dead-letter stream
    lag: int | None  # entries the consumer group has not yet been given; None if Redis cannot tell
    pending: int  # entries given to a consumer and not yet acknowledged


async def stream_state(client: RedisClient, stream: str, group: str) -> StreamState:
    """The stream's length, its dead letters and the consumer group's lag and pending count
    (all zero before the stream exists). The caller bounds the calls."""
    length = int(await client.xlen(stream))
    dead = int(await client.xlen(dead_letter_stream(stream)))
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        groups = []
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            lag = info.get("lag")
            return StreamState(length, dead, None if lag is None else int(lag), int(info["pending"]))
    return StreamState(length, dead, length, 0)  # no group yet: everything is still to be read
