"""Every counter the code may increment is exposed, with its help text, by prometheus_client."""

from __future__ import annotations

from typing import get_args

from common.metrics import END_REASONS, CounterName, Metrics
from common.rooms.events import EndReason
from tests.support.metrics import metric_value


def test_every_counter_is_exposed_with_help() -> None:
    metrics = Metrics()
    for name in get_args(CounterName):
        metrics.incr(name, 2)
    text = metrics.exposition().decode()
    for name in get_args(CounterName):
        assert f"# HELP roomservice_{name} " in text
        assert metric_value(text, f"roomservice_{name}") == 2
    assert "_created " not in text  # no creation-time series beside each counter


def test_each_metrics_counts_for_itself() -> None:
    """Apps of one process (a test's) do not add up each other's counts."""
    first, second = Metrics(), Metrics()
    first.incr("rooms_created_total")
    assert second.count("rooms_created_total") == 0
    assert metric_value(second.exposition().decode(), "roomservice_rooms_created_total") == 0


def test_process_metrics_are_exposed() -> None:
    text = Metrics().exposition().decode()
    assert metric_value(text, "roomservice_process_resident_memory_bytes") is not None
    assert metric_value(text, "python_gc_collections_total") is not None


def test_rooms_ended_has_a_series_for_every_reason_a_room_ends_for() -> None:
    assert set(END_REASONS) == set(get_args(EndReason))
    text = Metrics().exposition().decode()
    for reason in END_REASONS:
        assert f'roomservice_rooms_ended_total{{reason="{reason}"}} 0.0' in text
