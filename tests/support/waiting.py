"""Waiting inside a test's event loop for a condition, with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEADLINE_SECONDS = 10.0


async def until(
    condition: Callable[[], bool], what: str, seconds: float = DEADLINE_SECONDS
) -> None:
    """Return once ``condition()`` holds; fail after ``seconds``, naming ``what`` was awaited."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {seconds}s waiting for {what}") from None
