"""Periodic jobs fall on the wall clock, so every worker runs them at the same moments."""

from __future__ import annotations

import pytest

from worker.schedule import on_clock


def test_clock_schedules() -> None:
    assert on_clock(10) == {"second": {0, 10, 20, 30, 40, 50}}
    assert on_clock(60) == {"minute": set(range(60)), "second": 0}
    assert on_clock(900) == {"minute": {0, 15, 30, 45}, "second": 0}


def test_an_interval_off_the_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fall on a clock"):
        on_clock(7)
