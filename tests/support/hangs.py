"""What a test that hangs was waiting for: pytest-timeout prints every thread's stack, but an async
test hangs inside the event loop's poll, which says nothing; this adds, for every task the loop still
runs, the chain of awaits it is in, so the await that never returned is named."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Generator, Iterator
from types import FrameType
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, None, None]:
    yield
    timed_out = signal.getsignal(signal.SIGALRM)
    if not callable(timed_out):
        return  # the thread method, or no timeout: nothing of ours to add

    def show_tasks_then_fail(signum: int, interrupted: FrameType | None) -> None:
        loop = asyncio._get_running_loop()  # the handler runs on the main thread, inside the loop if any
        if loop is not None:
            terminal = item.config.get_terminal_writer()
            terminal.sep("+", title=f"tasks still running when {item.nodeid} timed out")
            for task in asyncio.all_tasks(loop):
                terminal.line(f"{task.get_name()}:")
                for frame in _awaiting(task.get_coro()):
                    terminal.line(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        timed_out(signum, interrupted)

    signal.signal(signal.SIGALRM, show_tasks_then_fail)


def _awaiting(coro: Any) -> Iterator[FrameType]:
    """The frames of a coroutine and of everything it awaits, outermost first (a task's own stack
    stops at its outermost coroutine)."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
