"""The service's metrics, kept by prometheus_client and exposed in the Prometheus text format.

Each `Metrics` has a registry of its own (a test makes many apps in one process, each counting for
itself). With several server processes (`ROOMS_WORKERS` > 1) `roomservice serve` sets
`PROMETHEUS_MULTIPROC_DIR` before any of them starts: prometheus_client then keeps every value in a
file per process there, and a scrape of any process reads them all (`exposition`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

CounterName = Literal[
    "rooms_created_total",
    "room_code_collisions_total",
    "cache_hits_total",
    "cache_misses_total",
    "database_lookups_total",
    "cache_errors_total",
    "cache_skipped_total",
    "cache_writes_skipped_total",
    "cache_foreign_values_replaced_total",
    "database_unavailable_total",
    "rate_limited_total",
    "tickets_issued_total",
]

_HELP: dict[CounterName, str] = {
    "rooms_created_total": "Rooms created.",
    "room_code_collisions_total": "Generated room codes that were already taken and drawn again.",
    "cache_hits_total": "Room lookups answered from Redis.",
    "cache_misses_total": "Room lookups not found in Redis.",
    "database_lookups_total": "Room lookups that reached Postgres (GET on a cache miss).",
    "cache_errors_total": "Redis calls of requests that failed or timed out.",
    "cache_skipped_total": "Redis calls of requests not attempted because the breaker was open.",
    "cache_writes_skipped_total": "Room cache writes that did not happen (Redis down or failing).",
    "cache_foreign_values_replaced_total": "Values another writer left at a room's keys, replaced by this process.",
    "database_unavailable_total": "Requests answered 503 because Postgres was unreachable or slow.",
    "rate_limited_total": "Requests answered 429: too many misses, rooms created, rooms changed or tickets asked for.",
    "tickets_issued_total": "Join tickets issued.",
}

PREFIX = "roomservice_"
# Why rooms end (common/rooms/events.py's EndReason, which this base layer does not import; a unit test
# holds the two the same): each a series of rooms_ended_total from the start.
END_REASONS = ("expired", "deleted", "empty", "unused")
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory of the per-process value files, when several processes share the metrics."""
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


class Metrics:
    """The domain counters, the Redis breaker's state, and whatever else a process registers on
    `registry` (the API's request metrics, the worker's job metrics)."""

    def __init__(self) -> None:
        # A `_created` timestamp beside every counter doubles the series and says nothing useful here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self._counters = {
            name: Counter(PREFIX + name, help_text, registry=self.registry) for name, help_text in _HELP.items()
        }
        # The latest state any process saw: the breaker opens and closes in each process by itself.
        self._breaker_open = Gauge(
            PREFIX + "cache_breaker_open",
            "1 while Redis is considered down (the breaker is open), else 0.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self._breaker_open.set(0)
        self._rooms_ended = Counter(
            PREFIX + "rooms_ended_total",
            "Rooms ended, by reason: expired, deleted (by a host or co-host), empty or unused (the presence pass).",
            ("reason",),
            registry=self.registry,
        )
        for reason in END_REASONS:
            self._rooms_ended.labels(reason)
        self._before_exposition: list[Callable[[], None]] = []
        if multiprocess_dir() is None:
            # What a process reports of itself (CPU, memory, open files, GC) means one process only,
            # and prometheus_client does not collect it in multi-process mode.
            ProcessCollector(namespace="roomservice", registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def incr(self, name: CounterName, amount: int = 1) -> None:
        self._counters[name].inc(amount)

    def count(self, name: CounterName) -> float:
        """This process's count (for tests and checks; a scrape reads `exposition`)."""
        value: float = self._counters[name]._value.get()  # prometheus_client has no public reader of one value
        return value

    def rooms_ended(self, reason: str, amount: int = 1) -> None:
        """Count rooms this process ended (in Postgres, where an end is decided)."""
        self._rooms_ended.labels(reason).inc(amount)

    def set_breaker_open(self, is_open: bool) -> None:
        self._breaker_open.set(1 if is_open else 0)

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(PREFIX + name, help_text, labels, registry=self.registry)

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        # "mostrecent": a gauge is set by one process at a time (a scrape, a job), the latest value holds.
        return Gauge(PREFIX + name, help_text, labels, registry=self.registry, multiprocess_mode="mostrecent")

    def histogram(self, name: str, help_text: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
        return Histogram(PREFIX + name, help_text, labels, registry=self.registry, buckets=buckets)

    def before_exposition(self, flush: Callable[[], None]) -> None:
        """Have `flush` (which must not raise) bring its figures up to date before each exposition."""
        self._before_exposition.append(flush)

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format: this process's registry, or with several
        processes the values of all of them."""
        for flush in self._before_exposition:
            flush()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
