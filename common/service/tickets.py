"""Issuing join tickets: a signed statement that a user may join a live room, for Signaling to verify
(docs/signaling.md)."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple
from uuid import UUID

from common.db import rooms
from common.db.pool import Pool, connection
from common.errors import RemovedFromRoom, RoomGone, RoomNotFound, RoomNotStarted, TicketsNotConfigured
from common.metrics import Metrics
from common.redis.counters import RateCounters
from common.redis.guarded import GuardedRedis
from common.redis.room_cache import RoomCache
from common.rooms.model import Room
from common.service.limits import TicketLimit
from common.settings import Settings
from common.tickets.claims import AUDIENCE, Role, TicketClaims
from common.tickets.keys import TicketKeys


class IssuedTicket(NamedTuple):
    ticket: str  # the compact JWS
    expires_at: datetime
    role: Role


def role_of(room: Room, user_id: UUID) -> Role:
    """What `user_id` is in `room`: its host, one of its co-hosts, or a guest."""
    if room.host_id == user_id:
        return "host"
    return "cohost" if user_id in room.cohost_ids else "guest"


class TicketService:
    """Issues tickets for live rooms, signed with the first of `keys`.

    `note_uncached` is told of each live room read from Postgres that Redis could not take, as the
    room service does: Signaling reads the room object at the join the ticket is for.
    """

    def __init__(
        self,
        pool: Pool,
        redis: GuardedRedis,
        keys: TicketKeys,
        settings: Settings,
        metrics: Metrics,
        *,
        note_uncached: Callable[[str], None] = lambda room_id: None,
    ) -> None:
        self._pool = pool
        self._cache = RoomCache(redis, metrics, settings.early_join_seconds)
        self._limit = TicketLimit(RateCounters(redis), settings, metrics)
        self._keys = keys
        self._issuer = settings.ticket_issuer
        self._ttl = settings.ticket_ttl_seconds
        self._early_join = settings.early_join_seconds
        self._timeout = settings.db_timeout_seconds
        self._metrics = metrics
        self._note_uncached = note_uncached

    @property
    def configured(self) -> bool:
        return self._keys.configured

    async def issue(self, room_id: str, user_id: UUID) -> IssuedTicket:
        """A ticket for `user_id` to join the live room `room_id` (canonical), valid for the configured
        time but never past the room's end. A room booked ahead gets none before it opens to joins
        (its start, less ROOMS_EARLY_JOIN_SECONDS): join.lua would refuse it then."""
        if not self._keys.configured:
            raise TicketsNotConfigured("no ticket signing key is configured (ROOMS_TICKET_KEYS)")
        await self._limit.check(user_id)
        room = await self._live_room(room_id)
        if str(user_id) in room.removed_ids:
            raise RemovedFromRoom(f"you were removed from room {room_id}: it admits you no more until it ends")
        moment = time.time()
        opens = room.start.timestamp() - self._early_join
        if moment < opens:
            raise RoomNotStarted(
                f"room {room_id} opens to joins at {room.start.isoformat()}"
                + (f", less {self._early_join} s" if self._early_join else ""),
                room.start,
                retry_after=max(math.ceil(opens - moment), 1),
            )
        now = int(moment)
        # Whole seconds, as JWT times are: rounded down, so a ticket never outlives its room.
        expires = min(now + self._ttl, int(room.expires_at.timestamp()))
        if expires <= now:
            raise RoomGone(f"room {room_id} has ended")  # it ends within the second
        role = role_of(room, user_id)
        claims = TicketClaims(
            iss=self._issuer,
            aud=AUDIENCE,
            sub=str(user_id),
            room=room.room_id,
            rid=str(room.id),
            role=role,
            iat=now,
            nbf=now,
            exp=expires,
            jti=secrets.token_urlsafe(16),  # 128 random bits
        )
        ticket = self._keys.sign(claims)
        self._metrics.incr("tickets_issued_total")
        return IssuedTicket(ticket, datetime.fromtimestamp(expires, UTC), role)

    async def _live_room(self, room_id: str) -> Room:
        """The live room from Redis, else from Postgres (caching it again, or its end); raises
        RoomNotFound or RoomGone. Unlike validate, a miss here costs no miss allowance: the ticket
        limit counts every request of this authenticated caller already."""
        lookup = await self._cache.lookup_room(room_id)
        if lookup.room is not None:
            return lookup.room  # cached until the room's end, so live
        if lookup.known_missing:
            raise RoomNotFound(f"no room {room_id}")
        if lookup.known_ended:
            raise RoomGone(f"room {room_id} has ended")
        self._metrics.incr("database_lookups_total")
        async with connection(self._pool, self._timeout) as conn:
            stored = await rooms.get_room(conn, room_id)
        if stored is None:
            raise RoomNotFound(f"no room {room_id}")
        if not stored.live:
            await self._cache.write(end=[stored.room])
            raise RoomGone(f"room {room_id} has ended")
        if await self._cache.write(put=[stored.cached]) is None:
            self._note_uncached(room_id)
        return stored.room
