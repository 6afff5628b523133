"""The newest revision a process knows is committed, and waiting for a newer one."""

from __future__ import annotations

import asyncio
from contextlib import suppress


class Head:
    """A revision that only grows, with every waiter woken when it does."""

    def __init__(self) -> None:
        self._head = 0
        self._changed = asyncio.Event()

    @property
    def head(self) -> int:
        """The newest revision this process knows to be committed."""
        return self._head

    def advance(self, revision: int) -> None:
        """Record that ``revision`` is committed and wake every waiter if it is new."""
        if revision > self._head:
            self._head = revision
            self.wake_all()

    def wake_all(self) -> None:
        """Wake every waiter, e.g. to re-read the log after wake-ups may have been missed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_past(self, revision: int, max_wait: float) -> None:
        """Return once the head is past ``revision`` or woken, or after ``max_wait`` seconds."""
        if self._head > revision:
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max_wait)
