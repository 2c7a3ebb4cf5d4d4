"""The API's request tallies, moved into prometheus_client, read as prometheus_client's own observe would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from api.observe import LATENCY_BUCKETS, RequestMetrics, request_id_of
from common.metrics import Metrics
from tests.support.metrics import metric_value

NAME = "roomservice_http_request_duration_seconds"


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_flushed_tallies_read_as_observed_values() -> None:
    draws = random.Random(7)
    seconds = [draws.expovariate(300) for _ in range(2000)] + [*LATENCY_BUCKETS, 0.0, 99.0]
    metrics = Metrics()
    tallied = RequestMetrics(metrics)
    reference = CollectorRegistry()
    observed = Histogram(NAME, "reference", ("method", "route"), registry=reference, buckets=LATENCY_BUCKETS)
    for value in seconds:
        tallied.observe("GET", "/rooms/{room_id}", 200, value)
        observed.labels("GET", "/rooms/{room_id}").observe(value)

    text = metrics.exposition().decode()  # flushes first
    assert _lines(text, NAME) == _lines(generate_latest(reference).decode(), NAME)
    assert metric_value(text, "roomservice_http_requests_total", status="200") == len(seconds)


def test_a_second_flush_adds_only_what_came_since() -> None:
    metrics = Metrics()
    tallied = RequestMetrics(metrics)
    tallied.observe("POST", "/rooms", 201, 0.002)
    metrics.exposition()
    tallied.observe("POST", "/rooms", 201, 0.003)
    tallied.observe("POST", "/rooms", 503, 1.2)
    text = metrics.exposition().decode()
    assert metric_value(text, "roomservice_http_requests_total", status="201") == 2
    assert metric_value(text, "roomservice_http_requests_total", status="503") == 1
    assert metric_value(text, f"{NAME}_count", route="/rooms") == 3
    assert abs((metric_value(text, f"{NAME}_sum", route="/rooms") or 0) - 1.205) < 1e-9


def test_made_request_ids_are_unique_and_callers_are_kept() -> None:
    made = {request_id_of([]) for _ in range(10_000)}
    assert len(made) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert request_id_of([(b"x-request-id", b"gw-1/a")]) == "gw-1/a"
    for refused in (b"two words", b"trailing-newline\n", b"x" * 129, b"", "caf\u00e9".encode()):
        assert request_id_of([(b"x-request-id", refused)]) != refused.decode(errors="replace")
