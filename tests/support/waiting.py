"""Waiting, boundedly, for something a background process does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Return once `check()` is true; fail the test, naming `what`, if it is not within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"not within {within}s: {what}")
