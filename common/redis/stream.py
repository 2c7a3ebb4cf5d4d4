"""The room event stream (`rooms:events` by default): how events are appended and how long they stay.

Two bounds hold the stream: its length (`ROOMS_STREAM_MAX_LENGTH`, trimmed by every XADD) and the age
of its entries (`ROOMS_STREAM_RETENTION_SECONDS`, trimmed by the relay once a run). One XADD can
carry only one of MAXLEN and MINID, and the length is the bound that protects Redis from a flood; the
age trim once a second costs the requests nothing. Both are approximate (`~`): Redis drops only whole
nodes of the stream, which is what makes trimming cheap.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from redis.exceptions import ResponseError

from common.redis.client import RedisClient
from common.redis.commands import CommandQueue
from common.redis.keys import dead_letter_stream
from common.rooms.events import RoomEvent, stream_fields
from common.settings import Settings


def retention_floor(retention_seconds: int) -> str:
    """The stream id before which entries may be trimmed (`XADD ... MINID ~ <id>`)."""
    return f"{int((time.time() - retention_seconds) * 1000)}-0"


class EventStream:
    """Appends room events to the stream, which keeps about `max_length` entries (0: no cap) and none
    much older than `retention_seconds`."""

    def __init__(self, name: str, retention_seconds: int, max_length: int = 0) -> None:
        self._name = name
        self._retention = retention_seconds
        self._max_length = max_length

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStream:
        return cls(settings.stream_name, settings.stream_retention_seconds, settings.stream_max_length)

    def queue_append(self, queue: CommandQueue, events: Sequence[tuple[RoomEvent, str]]) -> None:
        """Queue an XADD per event, given with its data's JSON as the database made it (sent as it
        is), each trimming the stream to its cap (or, with no cap, to the retention: then the age is
        the only bound and each XADD keeps it)."""
        if self._max_length:
            for event, data in events:
                fields = stream_fields(event, data)
                queue.xadd(self._name, fields, maxlen=self._max_length, approximate=True)  # type: ignore[arg-type]
        else:
            floor = retention_floor(self._retention)
            for event, data in events:
                queue.xadd(self._name, stream_fields(event, data), minid=floor, approximate=True)  # type: ignore[arg-type]

    async def trim_by_age(self, client: RedisClient) -> int:
        """Drop the entries older than the retention (about: whole nodes only); how many went. The
        caller bounds the call."""
        trimmed: int = await client.xtrim(self._name, minid=retention_floor(self._retention), approximate=True)
        return trimmed


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
