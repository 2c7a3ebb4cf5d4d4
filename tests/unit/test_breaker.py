from __future__ import annotations

from common.redis.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_the_interval() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, retry_seconds=5, clock=clock)

    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    assert not breaker.allow()

    clock.now += 5
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.record_success()
    assert not breaker.is_open
    assert breaker.allow()


def test_a_failed_probe_reopens_for_another_interval() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, retry_seconds=2, clock=clock)
    breaker.record_failure()
    clock.now += 2
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 1.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(threshold=2, retry_seconds=1, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert not breaker.is_open


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, retry_seconds=1, clock=clock)
    breaker.record_failure()
    clock.now += 1
    assert breaker.allow()
    breaker.record_abandoned()
    assert breaker.allow()
