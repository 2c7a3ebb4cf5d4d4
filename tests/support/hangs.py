"""A test that hangs ends the run at once, saying what every task was waiting for.

pytest-timeout's thread method (pyproject.toml) prints every thread's stack and ends the process: a
hang costs the timeout, not the CI's whole budget, and no blocked `thread.join()` (the app thread of
an AsyncTestClient) can keep it alive. A thread's stack shows an event loop in its poll, which says
nothing; this adds, for every task of every event loop still open, in any thread, the chain of awaits
it is in, so the await that never returned is named.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "thread":
        return None  # pytest-timeout's own handling

    def expire() -> None:
        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(item)
        _show_tasks(item)
        pytest_timeout.timeout_timer(item, settings)  # the threads' stacks, then os._exit(1)

    timer = threading.Timer(settings.timeout, expire)
    timer.name = f"timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # what pytest-timeout's cancel hook calls
    timer.start()
    return True


def _show_tasks(item: pytest.Item) -> None:
    terminal = item.config.get_terminal_writer()
    terminal.sep("+", title=f"tasks still running when {item.nodeid} timed out")
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()]
    for loop in loops:
        for task in asyncio.all_tasks(loop):
            terminal.line(f"{task.get_name()}:")
            for frame in _awaiting(task.get_coro()):
                terminal.line(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")


def _awaiting(coro: Any) -> Iterator[FrameType]:
    """The frames of a coroutine and of everything it awaits, outermost first (a task's own stack
    stops at its outermost coroutine)."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
