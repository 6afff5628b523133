"""The WatchBooks feed: a snapshot or a replay, then live events, in revision order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from server.domain.errors import InvalidArgument
from server.domain.models import BookEvent, EventType
from server.storage.base import Storage

_BATCH = 500
# How long an idle watcher sleeps before it looks at the log again by itself,
# in case a wake-up from another process was missed.
_IDLE_RECHECK_SECONDS = 1.0


class EventFeed:
    """Streams the change log to watchers until the server starts draining."""

    def __init__(self, storage: Storage, draining: asyncio.Event) -> None:
        self._storage = storage
        self._draining = draining

    async def watch(self, since_revision: int) -> AsyncIterator[BookEvent]:
        """Every event after ``since_revision`` (a snapshot first for 0), then live ones.

        Ends normally when the server drains, so clients resume elsewhere with
        the last revision they saw.
        """
        if since_revision < 0:
            raise InvalidArgument(f"since_revision must not be negative, got {since_revision}")
        last = since_revision
        if since_revision == 0:
            last, books = await self._storage.snapshot()
            for book in books:
                yield BookEvent(last, EventType.CREATED, book)
        # Fails fast with OutOfRange when the log no longer holds what follows.
        events = await self._storage.events_after(last, _BATCH)
        while not self._draining.is_set():
            for event in events:
                yield event
                last = event.revision
            if len(events) < _BATCH:
                await self._wait(last)
            events = await self._storage.events_after(last, _BATCH)

    async def _wait(self, revision: int) -> None:
        drain = asyncio.ensure_future(self._draining.wait())
        change = asyncio.ensure_future(
            self._storage.wait_for_events(revision, _IDLE_RECHECK_SECONDS)
        )
        try:
            await asyncio.wait((drain, change), return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
            change.cancel()
