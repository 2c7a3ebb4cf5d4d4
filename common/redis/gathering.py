"""Requests' commands gathered per turn of the event loop and sent as one batch.

The pipelines that concurrent requests ask for within one turn of the event loop go out together (the
way ioredis, rueidis and Lettuce pipeline automatically): one round trip, one connection taken from
the pool, one task woken, however many requests share it. Each request still gets its own outcome, and
a request cancelled while its batch is out does not cancel the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from common.redis.batch import Caller, Outcome

# Sends a batch: (the callers, the loop time the first of them asked, whether it is the breaker's
# probe) -> an outcome per caller, or None if Redis was unavailable (see GuardedRedis).
SendBatch = Callable[[list[Caller], float, bool], Awaitable[list[Outcome] | None]]


@dataclass(slots=True)
class _Waiting:
    """A request's commands, gathered for the next batch."""

    caller: Caller
    since: float  # loop time it was asked for: its bound runs from here
    answer: asyncio.Future[Outcome | None]


class Gathering:
    """Collects the callers of one turn of the loop and sends them with `send_batch`."""

    def __init__(self, send_batch: SendBatch) -> None:
        self._send_batch = send_batch
        self._gathering: list[_Waiting] = []
        self._in_flight: set[asyncio.Task[None]] = set()  # batches gathered or being sent, until done

    async def join(self, caller: Caller) -> Outcome | None:
        """`caller`'s outcome, sent with the other callers of this turn of the loop; None if Redis
        was unavailable."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(caller, loop.time(), loop.create_future())
        self._gathering.append(waiting)
        if len(self._gathering) == 1:
            # The task runs first on the next turn of the loop, after every request of this one has
            # had its say. It is not the request's own: cancelling the request leaves it alone.
            self._start(self._send_gathered())
        return await waiting.answer

    async def alone(self, caller: Caller, *, probe: bool) -> Outcome | None:
        """`caller`'s outcome, sent in a batch of its own (the breaker's probe)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(caller, loop.time(), loop.create_future())
        self._start(self._send([waiting], probe=probe))
        return await waiting.answer

    def _start(self, batch: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(batch)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send_gathered(self) -> None:
        batch = [waiting for waiting in self._gathering if not waiting.answer.done()]  # cancelled: never sent
        self._gathering = []
        if batch:
            await self._send(batch, probe=False)

    async def _send(self, batch: list[_Waiting], *, probe: bool) -> None:
        outcomes: list[Outcome] | None = None
        try:
            outcomes = await self._send_batch([waiting.caller for waiting in batch], batch[0].since, probe)
        except Exception as bug:  # not Redis being unavailable: each request raises it, as it would alone
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(bug)
        finally:  # even when cancelled (the app stopping): nobody is left waiting
            for i, waiting in enumerate(batch):
                if not waiting.answer.done():  # else cancelled meanwhile, or answered with the bug
                    waiting.answer.set_result(None if outcomes is None else outcomes[i])
