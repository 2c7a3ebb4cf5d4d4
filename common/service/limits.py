"""Request limits: how many unknown or ended rooms a client may ask for, rooms a host may create, changes
and ends of rooms a user may ask for, and join tickets a user may get, per clock minute. All fail open:
while Redis cannot count, requests pass."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from common.errors import RateLimited
from common.metrics import Metrics
from common.redis.counters import Counted, RateCounters
from common.settings import Settings

# Clients remembered as over the miss limit; past this many, expired entries are dropped.
_MAX_BLOCKED_CLIENTS = 100_000


class MissLimit:
    """A room code answers "does this meeting exist", so each client may get only so many 404/410 a minute.

    Counters live in Redis, shared by every API process; each process also remembers the clients it
    has seen go over, so that a hit costs no extra Redis read. A client over the limit is refused by
    a process from the first miss that process sees of it.
    """

    def __init__(self, counters: RateCounters, settings: Settings, metrics: Metrics) -> None:
        self._counters = counters
        self._limit = settings.miss_limit_per_minute
        self._remember_seconds = settings.negative_cache_seconds
        self._metrics = metrics
        # Clients over the limit, and until when (epoch seconds).
        self._blocked: dict[str, float] = {}
        self._all_unblocked_at = 0.0  # when the last of them runs out

    @property
    def blocks_anyone(self) -> bool:
        """Whether this process may know a client to be over the limit now; costs no I/O."""
        if self._blocked and time.time() >= self._all_unblocked_at:
            self._blocked.clear()  # every block has run out
        return bool(self._blocked)

    def refuse_if_blocked(self, client: str) -> None:
        """Raise `RateLimited` if this process knows `client` to be over the limit; costs no I/O."""
        until = self._blocked.get(client)
        if until is None:
            return
        left = until - time.time()
        if left <= 0:
            del self._blocked[client]
            return
        self._refuse(int(left) + 1)

    async def count(self, client: str, unknown_room_id: str | None) -> None:
        """Count a miss (and remember `unknown_room_id`, a 404, as missing); raise `RateLimited` past the limit."""
        counted = await self._counters.count_miss(client, unknown_room_id, self._remember_seconds)
        if counted is None or not self._limit or counted.total <= self._limit:
            return
        if len(self._blocked) >= _MAX_BLOCKED_CLIENTS:
            now = time.time()
            self._blocked = {c: until for c, until in self._blocked.items() if until > now}
        self._blocked[client] = time.time() + counted.retry_after
        self._all_unblocked_at = max(self._all_unblocked_at, self._blocked[client])
        self._refuse(counted.retry_after)

    def _refuse(self, retry_after: int) -> None:
        self._metrics.incr("rate_limited_total")
        raise RateLimited(f"too many unknown or ended rooms asked for; retry in {retry_after} s", retry_after)


class _PerCallerLimit:
    """Requests of one kind an authenticated caller may make a minute; `limit` 0 disables."""

    def __init__(self, count: Callable[[str], Awaitable[Counted | None]], limit: int, what: str, metrics: Metrics):
        self._count = count
        self._limit = limit
        self._what = what
        self._metrics = metrics

    async def check(self, caller: UUID) -> None:
        """Count a request by `caller`; raise `RateLimited` past the limit."""
        if not self._limit:
            return
        counted = await self._count(str(caller))
        if counted is not None and counted.total > self._limit:
            self._metrics.incr("rate_limited_total")
            retry_after = counted.retry_after
            raise RateLimited(f"at most {self._limit} {self._what} a minute; retry in {retry_after} s", retry_after)


class CreationLimit(_PerCallerLimit):
    """Rooms one host may create a minute."""

    def __init__(self, counters: RateCounters, settings: Settings, metrics: Metrics) -> None:
        super().__init__(counters.count_creation, settings.create_limit_per_minute, "rooms", metrics)


class ChangeLimit(_PerCallerLimit):
    """Changes and ends of rooms (PATCH, DELETE) one user may ask for a minute, refused or not: each
    costs Postgres a statement, and each change an event kept on the stream."""

    def __init__(self, counters: RateCounters, settings: Settings, metrics: Metrics) -> None:
        super().__init__(counters.count_change, settings.change_limit_per_minute, "changes of rooms", metrics)


class TicketLimit(_PerCallerLimit):
    """Join tickets one user may get a minute."""

    def __init__(self, counters: RateCounters, settings: Settings, metrics: Metrics) -> None:
        super().__init__(counters.count_ticket, settings.ticket_limit_per_minute, "tickets", metrics)
