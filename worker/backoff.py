"""Waiting between attempts: longer after each failure, cut short when the process is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib

_FIRST_SECONDS = 0.5
_MOST_SECONDS = 10.0


class Backoff:
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self.delay = _FIRST_SECONDS

    async def wait(self) -> None:
        """Wait the current delay (or until stop), then double it for next time, up to the most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=self.delay)
        self.delay = min(self.delay * 2, _MOST_SECONDS)

    def reset(self) -> None:
        """What went wrong is over: the next failure is a new incident."""
        self.delay = _FIRST_SECONDS
