"""The one guarded way the service calls Redis on its request paths.

Redis is an accelerator and a mailbox here, never a requirement: a guarded call degrades to a default
when Redis is down or slow (the caller decides what that means), and a circuit breaker makes an
outage cost nothing once it is known. The pipelines of requests are gathered per turn of the event
loop (common/redis/gathering.py) and sent together (common/redis/batch.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from common.metrics import Metrics
from common.redis.batch import Caller, Outcome, Read, Stage, run_batch
from common.redis.breaker import CircuitBreaker
from common.redis.client import REDIS_UNAVAILABLE, RedisClient, restore_seeds
from common.redis.gathering import Gathering
from common.redis.scripts import LuaScript
from common.settings import Settings

T = TypeVar("T")


class GuardedRedis:
    """Calls to Redis bounded by `timeout` and watched by a breaker; never raises for Redis being unavailable.

    `scripts` are the Lua scripts its callers run by EVALSHA: a Redis that restarted, or a node that
    never saw them, does not know them, and `pipeline` loads them again.
    """

    def __init__(
        self, client: RedisClient, settings: Settings, metrics: Metrics, timeout: float, scripts: Sequence[LuaScript]
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._breaker = CircuitBreaker(settings.redis_breaker_threshold, settings.redis_retry_seconds)
        self._metrics = metrics
        self._scripts = {script.sha: script for script in scripts}
        self._seeds = settings.cluster_nodes if settings.redis_mode == "cluster" else []
        self._gathering = Gathering(self._send_batch)

    @property
    def available(self) -> bool:
        """False while the breaker is open, that is while Redis is known to be down."""
        return not self._breaker.is_open

    async def call(self, command: Callable[[RedisClient], Awaitable[T]], default: T) -> T:
        """`command(client)` within the bound; `default` if Redis is unavailable or known to be down.
        Not gathered with other calls: for what is not on a request's path (probes, scripts, INFO)."""
        return await self._guarded(command, default, deadline=asyncio.get_running_loop().time() + self._timeout)

    async def pipeline(self, *stages: Stage) -> list[Any] | None:
        """The commands that `stages` queue, run in order; their results, or None if Redis is
        unavailable, or known to be down, or any of these commands failed (then not all of them ran).
        See `pipeline_results`."""
        results = await self.pipeline_results(*stages)
        if results is not None and any(isinstance(result, Exception) for result in results):
            return None
        return results

    async def pipeline_results(self, *stages: Stage) -> list[Any] | None:
        """The commands that `stages` queue, run in order; a result per command, a command that Redis
        refused (a wrong type, say) with its error in its place; None if Redis is unavailable or known
        to be down (then none can tell what ran).

        Gathered with the pipelines of other requests of this turn of the event loop and sent with
        them (see common/redis/batch.py for how the order holds on a cluster). Each request keeps its
        own bounds: its answer comes within `timeout` of its asking, a command that fails fails only
        itself, and a request cancelled while its batch is out does not cancel the batch. While the
        breaker is open this costs nothing at all.
        """
        results = await self._gathered(stages)
        if results is not None and any(isinstance(result, Exception) for result in results):
            self._metrics.incr("cache_errors_total")
        return results

    async def read(self, keys: Sequence[str]) -> list[Any] | None:
        """The values of `keys`, which share a cluster slot; None as for `pipeline`. Gathered like it,
        and on one server sent as one MGET with the other requests' reads."""
        return await self._gathered(Read(tuple(keys)))

    async def _gathered(self, caller: Caller) -> list[Any] | None:
        if self._breaker.is_open:
            # Known to be down: one request at a time finds out whether it is back (the probe), on its
            # own; the others do without, at no cost.
            if not self._breaker.allow():
                self._metrics.incr("cache_skipped_total")
                return None
            outcome = await self._gathering.alone(caller, probe=True)
        else:
            outcome = await self._gathering.join(caller)
        if isinstance(outcome, RedisError):
            # Redis answered, and so is up: this request's command was refused, or could not be sent
            # (an argument redis-py cannot encode).
            self._metrics.incr("cache_errors_total")
            return None
        if isinstance(outcome, Exception):
            raise outcome  # a bug in what this request queued: its own 500
        return outcome

    async def _send_batch(self, callers: list[Caller], since: float, probe: bool) -> list[Outcome] | None:
        """One round trip for the whole batch, bounded by the earliest bound among its requests and
        counted once by the breaker, whatever the number of requests."""
        return await self._guarded(
            lambda client: run_batch(client, callers, self._scripts),
            default=None,
            deadline=since + self._timeout,
            requests=len(callers),
            probe=probe,
        )

    async def _guarded(
        self,
        command: Callable[[RedisClient], Awaitable[T]],
        default: T,
        deadline: float,
        requests: int = 1,
        probe: bool = False,
    ) -> T:
        """`requests`: how many requests wait for this call, for the metrics, which count requests.
        `probe`: the breaker has already let this call through as its probe."""
        if asyncio.get_running_loop().time() >= deadline:
            # The bound ran out before the call could start (the loop was busy): no news of Redis.
            self._metrics.incr("cache_errors_total", requests)
            if probe:
                self._breaker.record_abandoned()
            return default
        if not probe and not self._breaker.allow():
            self._metrics.incr("cache_skipped_total", requests)
            return default
        recovering = self._breaker.is_open
        if recovering and isinstance(self._client, RedisCluster):
            restore_seeds(self._client, self._seeds)
        try:
            async with asyncio.timeout_at(deadline):
                result = await command(self._client)
                if recovering:
                    # Redis is back, perhaps as a promoted replica or a restarted server that has
                    # never seen the scripts: load them before a pipeline could meet NOSCRIPT after
                    # its later commands ran (the event before its cache write).
                    await self._load_scripts(self._client)
        except REDIS_UNAVAILABLE:
            self._breaker.record_failure()
            self._metrics.incr("cache_errors_total", requests)
            self._metrics.set_breaker_open(self._breaker.is_open)
            return default
        except BaseException:
            self._breaker.record_abandoned()
            raise
        self._breaker.record_success()
        if recovering:
            self._metrics.set_breaker_open(False)
        return result

    async def load_scripts(self) -> None:
        """Load the scripts now (best effort), so that the first writes need no second round trip."""
        await self.call(self._load_scripts, default=None)

    async def _load_scripts(self, client: RedisClient) -> None:
        for script in self._scripts.values():
            await client.script_load(script.source)  # on every primary of a cluster

    async def ping(self) -> bool:
        """Whether Redis answers now. Goes through the breaker, so it also serves as its probe."""
        return bool(await self.call(lambda client: client.ping(), default=False))
