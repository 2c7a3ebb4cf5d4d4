"""Every counter the code may increment is exposed, with its help text."""

from __future__ import annotations

from typing import get_args

from common.metrics import CounterName, Metrics


def test_every_counter_is_rendered_with_help() -> None:
    metrics = Metrics()
    for name in get_args(CounterName):
        metrics.incr(name, 2)
    text = metrics.render()
    for name in get_args(CounterName):
        assert f"# HELP roomservice_{name} " in text
        assert f"\nroomservice_{name} 2\n" in text
