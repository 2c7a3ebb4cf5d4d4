"""Who is in a room now, as Signaling's scripts keep it in Redis: the participant set (heartbeat
expiries) and when each joined. Redis alone knows it: without Redis there is no answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from common.db import rooms
from common.db.pool import Pool, connection
from common.errors import NotRoomHost, PresenceUnavailable, RoomGone, RoomNotFound
from common.metrics import Metrics
from common.redis.commands import CommandQueue
from common.redis.guarded import GuardedRedis
from common.redis.keys import joined_key, participants_key
from common.redis.room_cache import RoomCache
from common.rooms.model import Room
from common.settings import Settings


class Participant(NamedTuple):
    participant_id: str
    joined_at: datetime | None  # None for one admitted by a join.lua that kept no such time
    heartbeat_expires_at: datetime


class Participants(NamedTuple):
    room: Room
    present: list[Participant]  # earliest joined first


class Presence:
    """Lists a room's live participants for its host and co-hosts."""

    def __init__(self, pool: Pool, redis: GuardedRedis, settings: Settings, metrics: Metrics) -> None:
        self._pool = pool
        self._redis = redis
        self._cache = RoomCache(redis, metrics, settings.early_join_seconds)
        self._timeout = settings.db_timeout_seconds

    async def participants(self, room_id: str, caller: UUID) -> Participants:
        room = await self._live_room(room_id)
        if caller != room.host_id and caller not in room.cohost_ids:
            raise NotRoomHost("only the room's host and co-hosts may list its participants")
        # Live: a heartbeat not yet expired, as join.lua judges by Redis TIME (this clock is near it).
        now_ms = int(time.time() * 1000)

        def read(queue: CommandQueue) -> None:
            queue.execute_command("ZRANGE", participants_key(room_id), f"({now_ms}", "+inf", "BYSCORE", "WITHSCORES")
            queue.hgetall(joined_key(room_id))

        found = await self._redis.pipeline(read)
        if found is None:
            raise PresenceUnavailable("who is in the room is known to Redis alone, which is unavailable")
        members, joined = found
        return Participants(room, sorted(_participants(members, joined), key=_joined_first))

    async def _live_room(self, room_id: str) -> Room:
        lookup = await self._cache.lookup_room(room_id)
        if lookup.room is not None:
            return lookup.room
        async with connection(self._pool, self._timeout) as conn:
            stored = await rooms.get_room(conn, room_id)
        if stored is None:
            raise RoomNotFound(f"no room {room_id}")
        if not stored.live:
            raise RoomGone(f"room {room_id} has ended")
        return stored.room


def _participants(members: list[bytes], joined: dict[bytes, bytes]) -> list[Participant]:
    """From ZRANGE ... WITHSCORES (member, expiry, member, expiry, ...) and the hash of join times."""
    return [
        Participant(
            participant_id=member.decode(),
            joined_at=_moment(joined.get(member)),
            heartbeat_expires_at=datetime.fromtimestamp(float(score) / 1000, UTC),
        )
        for member, score in zip(members[::2], members[1::2], strict=True)
    ]


def _moment(ms: Any) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)


def _joined_first(participant: Participant) -> tuple[datetime, str]:
    return participant.joined_at or datetime.min.replace(tzinfo=UTC), participant.participant_id
