"""Per-client counters in fixed one-minute windows, shared by every API process through Redis."""

from __future__ import annotations

import time
from typing import NamedTuple

from common.redis.commands import CommandQueue
from common.redis.guarded import GuardedRedis
from common.redis.keys import missing_room_key, rate_counter_key

# A window's counter outlives its minute a little, so a clock slightly off between processes still counts.
_COUNTER_TTL_SECONDS = 120


class Counted(NamedTuple):
    total: int  # in this window, including the one just counted
    retry_after: int  # seconds until the window ends


class RateCounters:
    """Nothing here raises for Redis being down: an unknown count is None, and the caller lets it pass."""

    def __init__(self, redis: GuardedRedis) -> None:
        self._redis = redis

    async def count_miss(self, client: str, unknown_room_id: str | None, remember_seconds: int) -> Counted | None:
        """Count a 404/410 against the client and, for a 404, remember the code as missing for a while
        (in the same round trip)."""
        counter, retry_after = _window("miss", client)

        def commands(pipe: CommandQueue) -> None:
            if unknown_room_id is not None:
                pipe.set(missing_room_key(unknown_room_id), b"1", ex=remember_seconds)
            pipe.incr(counter)
            pipe.expire(counter, _COUNTER_TTL_SECONDS)

        results = await self._redis.pipeline(commands)
        return None if results is None else Counted(int(results[-2]), retry_after)

    async def count_creation(self, host: str) -> Counted | None:
        """Count a room created by `host`."""
        return await self._count("create", host)

    async def count_change(self, user: str) -> Counted | None:
        """Count a change or an end of a room asked for by `user`."""
        return await self._count("change", user)

    async def count_ticket(self, user: str) -> Counted | None:
        """Count a join ticket asked for by `user`."""
        return await self._count("ticket", user)

    async def _count(self, kind: str, client: str) -> Counted | None:
        counter, retry_after = _window(kind, client)

        def commands(pipe: CommandQueue) -> None:
            pipe.incr(counter)
            pipe.expire(counter, _COUNTER_TTL_SECONDS)

        results = await self._redis.pipeline(commands)
        return None if results is None else Counted(int(results[0]), retry_after)


def _window(kind: str, client: str) -> tuple[str, int]:
    """The counter of `client` for `kind` in this clock minute, and the seconds left in it."""
    now = time.time()
    return rate_counter_key(kind, client, int(now // 60)), 60 - int(now % 60)
