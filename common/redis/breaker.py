"""A circuit breaker: once a dependency is known to be down, callers stop paying for it."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; after `retry_seconds` lets one probe through.

    Closed: every call is allowed. Open: calls are refused until the retry time, then exactly one
    call (the probe) is allowed; its success closes the breaker, its failure opens it again.
    """

    def __init__(self, threshold: int, retry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._failures >= self._threshold

    def allow(self) -> bool:
        """Whether a call may go out now. When it returns True the caller must report the outcome."""
        if not self.is_open:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self.is_open:
            self._open_until = self._clock() + self._retry_seconds

    def record_abandoned(self) -> None:
        """The call was cancelled before it could tell: let a later call probe instead."""
        self._probing = False
