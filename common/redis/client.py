"""The Redis client, and the one guarded way the service calls Redis on its request paths.

Redis is an accelerator and a mailbox here, never a requirement: a guarded call degrades to a default
when Redis is down or slow (the caller decides what that means), and a circuit breaker makes an
outage cost nothing once it is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError

from common.metrics import Metrics
from common.redis.breaker import CircuitBreaker
from common.redis.scripts import LuaScript
from common.settings import Settings, require

T = TypeVar("T")
R = TypeVar("R", bound=redis.Redis)

# What a guarded call counts as "Redis is unavailable": anything else is a bug and propagates.
REDIS_UNAVAILABLE = (RedisError, OSError, TimeoutError)


def create_redis(settings: Settings, timeout: float, client_class: type[R], *, bounded_by_caller: bool = False) -> R:
    """A client whose connects and commands are bounded by `timeout`: redis-py waits forever by default.

    `bounded_by_caller`: every command is sent under the caller's own `asyncio.timeout` (as
    `GuardedRedis` does), so the per-socket timeout is left off. redis-py implements it with
    `asyncio.wait_for`, a new task for every command sent, which costs the hot path more than the
    rest of the command.
    """
    # A blocking pool waits (boundedly) for a free connection under a burst, where the default pool
    # would fail at once and count the burst against the breaker as if Redis were down.
    pool = redis.BlockingConnectionPool.from_url(
        require(settings.redis_url, "REDIS_URL"),
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_timeout=None if bounded_by_caller else timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )
    return cast(R, client_class.from_pool(pool))  # the client owns the pool: aclose() closes its connections


class GuardedRedis:
    """Calls to Redis bounded by `timeout` and watched by a breaker; never raises for Redis being unavailable.

    `scripts` are the Lua scripts its callers run by EVALSHA: a Redis that restarted has forgotten
    them, and `pipeline` loads them again.
    """

    def __init__(
        self, client: redis.Redis, settings: Settings, metrics: Metrics, timeout: float, scripts: Sequence[LuaScript]
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._breaker = CircuitBreaker(settings.redis_breaker_threshold, settings.redis_retry_seconds)
        self._metrics = metrics
        self._scripts = {script.sha: script for script in scripts}

    @property
    def available(self) -> bool:
        """False while the breaker is open, that is while Redis is known to be down."""
        return not self._breaker.is_open

    async def call(self, command: Callable[[redis.Redis], Awaitable[T]], default: T) -> T:
        """`command(client)` within the bound; `default` if Redis is unavailable or known to be down."""
        if not self._breaker.allow():
            self._metrics.incr("cache_skipped_total")
            return default
        try:
            async with asyncio.timeout(self._timeout):
                result = await command(self._client)
        except REDIS_UNAVAILABLE:
            self._breaker.record_failure()
            self._metrics.incr("cache_errors_total")
            return default
        except BaseException:
            self._breaker.record_abandoned()
            raise
        self._breaker.record_success()
        return result

    async def pipeline(self, queue: Callable[[Pipeline], None]) -> list[Any] | None:
        """The commands `queue` adds, in one round trip and in order; their results, or None if Redis
        is unavailable or any command failed."""
        return await self.call(lambda client: self._run_pipeline(client, queue), default=None)

    async def _run_pipeline(self, client: redis.Redis, queue: Callable[[Pipeline], None]) -> list[Any]:
        """Raises the first error any command met. Script calls that met NOSCRIPT (Redis restarted and
        forgot the script) failed alone, the other commands having run: the script is loaded and just
        those calls run again."""
        pipe = client.pipeline(transaction=False)
        queue(pipe)
        queued = list(pipe.command_stack)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        unscripted = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unscripted:
            # A script not registered here stays failed: raise_first_error reports its NOSCRIPT.
            unscripted = [i for i in unscripted if str(queued[i][0][1]) in self._scripts]
            for sha in {str(queued[i][0][1]) for i in unscripted}:
                await client.script_load(self._scripts[sha].source)
            again = client.pipeline(transaction=False)
            for i in unscripted:
                args, options = queued[i]
                again.execute_command(*args, **options)
            for i, result in zip(unscripted, await again.execute(raise_on_error=False), strict=True):
                results[i] = result
        pipe.raise_first_error(queued, results)  # names the failing command, as redis-py would have
        return results

    async def load_scripts(self) -> None:
        """Load the scripts now (best effort), so that the first writes need no second round trip."""
        for script in self._scripts.values():
            await self.call(_loader(script), default=None)

    async def ping(self) -> bool:
        """Whether Redis answers now. Goes through the breaker, so it also serves as its probe."""
        return bool(await self.call(lambda client: client.ping(), default=False))


def _loader(script: LuaScript) -> Callable[[redis.Redis], Awaitable[str]]:
    return lambda client: client.script_load(script.source)
