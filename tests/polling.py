"""Waiting for state only an HTTP endpoint shows: poll with a deadline, never sleep-and-hope."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], within_s: float = 30) -> T:
    """Call `probe` until it returns something other than None; fail after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (found := await probe()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"condition not met in {within_s}s"
        await asyncio.sleep(0.05)
    return found
