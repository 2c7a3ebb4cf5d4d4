"""Process-local counters, exposed by the API at /metrics in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from typing import Literal

CounterName = Literal[
    "rooms_created_total",
    "room_code_collisions_total",
    "cache_hits_total",
    "cache_misses_total",
    "database_lookups_total",
    "cache_errors_total",
    "cache_skipped_total",
    "cache_writes_skipped_total",
    "database_unavailable_total",
    "rate_limited_total",
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
    "database_unavailable_total": "Requests answered 503 because Postgres was unreachable or slow.",
    "rate_limited_total": "Requests answered 429: too many misses, or too many rooms created.",
}


class Metrics:
    """Named counters, per process: with ROOMS_WORKERS > 1 a scrape reads whichever process answers."""

    def __init__(self) -> None:
        self._counts: Counter[CounterName] = Counter()

    def incr(self, name: CounterName, amount: int = 1) -> None:
        self._counts[name] += amount

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        lines: list[str] = []
        for name, help_text in _HELP.items():
            full = f"roomservice_{name}"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} counter", f"{full} {self._counts[name]}"]
        for gauge, (help_text, value) in (gauges or {}).items():
            full = f"roomservice_{gauge}"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge", f"{full} {value:g}"]
        return "\n".join(lines) + "\n"
