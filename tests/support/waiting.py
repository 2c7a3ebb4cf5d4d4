"""Waiting, boundedly, for something a background process does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Return once `check()` is true; fail the test, naming `what`, if it is not within `within` seconds.
    A check that does not return is cut at the deadline too."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            async with asyncio.timeout_at(deadline):
                if await check():
                    return
        except TimeoutError:
            if loop.time() < deadline:
                raise  # the check's own timeout, not ours
            break
        await asyncio.sleep(0.2)
    pytest.fail(f"not within {within}s: {what}")
