"""The event hub on each backend: slow watchers dropped without loss, consistent snapshots, caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime
from typing import cast

import pytest

from server.domain.errors import Unavailable
from server.domain.hub import EventHub, WatchLimits
from server.domain.models import Book, BookEvent, EventType, NewBook
from server.domain.storage import Storage
from server.storage import open_storage
from tests.support.data import isbn13
from tests.support.waiting import DEADLINE_SECONDS, until

pytestmark = pytest.mark.anyio

QUEUE = 5


@asynccontextmanager
async def opened(
    database_factory: Callable[[], str], limits: WatchLimits
) -> AsyncIterator[tuple[Storage, EventHub[BookEvent]]]:
    """A fresh database's storage and a started hub over it that yields events as they are."""
    storage = open_storage(database_factory(), event_retention=0, pool_size=4)
    await storage.open()
    hub = EventHub(storage, lambda event: event, asyncio.Event(), limits)
    await hub.start()
    try:
        yield storage, hub
    finally:
        await hub.stop()
        await storage.close()


async def add_books(storage: Storage, count: int) -> list[Book]:
    """``count`` new books, one write each."""
    return [
        await storage.create_book(NewBook(f"Hub {i}", "H", isbn13(), 2000), datetime.now(UTC))
        for i in range(count)
    ]


async def take(stream: AsyncIterator[BookEvent], count: int) -> list[BookEvent]:
    """The next ``count`` events of ``stream``."""
    async with asyncio.timeout(DEADLINE_SECONDS):
        return [await anext(stream) for _ in range(count)]


def revisions(events: Sequence[BookEvent]) -> list[int]:
    """The events' revisions, in the order seen."""
    return [e.revision for e in events]


async def test_a_watcher_that_falls_behind_is_ended_and_resumes_without_loss(
    database_factory: Callable[[], str],
) -> None:
    async with opened(database_factory, WatchLimits(queue_size=QUEUE)) as (storage, hub):
        start = await storage.head_revision()
        slow = hub.watch(start)
        fast = hub.watch(start)
        first = asyncio.ensure_future(anext(slow))
        fast_next = asyncio.ensure_future(anext(fast))
        await until(lambda: hub.live_count == 2, "both watchers live")

        # The fast watcher reads every event as it comes; the slow one reads one, then nothing.
        written: list[Book] = []
        fast_seen: list[BookEvent] = []
        for _ in range(2 * QUEUE):
            written += await add_books(storage, 1)
            async with asyncio.timeout(DEADLINE_SECONDS):
                fast_seen.append(await fast_next)
            fast_next = asyncio.ensure_future(anext(fast))
        head = start + len(written)
        seen = [await first]

        # What its queue held is still delivered, then the stream ends as retryable.
        seen += await take(slow, QUEUE)
        with pytest.raises(Unavailable, match="behind") as dropped:
            await anext(slow)
        assert f"since_revision = {seen[-1].revision}" in dropped.value.message
        assert hub.live_count == 1
        async with aclosing(hub.watch(seen[-1].revision)) as resumed:
            seen += await take(resumed, head - seen[-1].revision)
        fast_next.cancel()
        await asyncio.wait({fast_next})
    assert revisions(seen) == list(range(start + 1, head + 1))
    assert [e.book.id for e in seen] == [b.id for b in written]
    assert fast_seen == seen


async def test_a_snapshot_is_one_revision_whatever_is_written_meanwhile(
    database_factory: Callable[[], str],
) -> None:
    limits = WatchLimits(snapshot_page=10)
    async with opened(database_factory, limits) as (storage, hub):
        before = await add_books(storage, 45)
        revision = await storage.head_revision()
        async with aclosing(hub.watch(0)) as snapshot:
            first_page = await take(snapshot, 10)
            # While the client reads slowly: new books, deletions and a loan, on later pages.
            added = await add_books(storage, 3)
            for book in before[30:33]:
                await storage.delete_book(book.id, datetime.now(UTC))
            now = datetime.now(UTC)
            await storage.checkout_book(before[40].id, "member", now, now)
            rest = await take(snapshot, len(before) - 10)
            live = await take(snapshot, 7)
    snapshot_events = first_page + rest
    assert {e.revision for e in snapshot_events} == {revision}
    assert {e.type for e in snapshot_events} == {EventType.CREATED}
    assert [e.book for e in snapshot_events] == before
    assert revisions(live) == list(range(revision + 1, revision + 8))
    assert [(e.type, e.book.id) for e in live] == [
        *((EventType.CREATED, b.id) for b in added),
        *((EventType.DELETED, b.id) for b in before[30:33]),
        (EventType.UPDATED, before[40].id),
    ]


async def test_watchers_and_snapshots_past_their_caps_are_refused_as_retryable(
    database_factory: Callable[[], str],
) -> None:
    limits = WatchLimits(max_watchers=2, max_snapshots=1, snapshot_page=2, snapshot_wait=0.1)
    async with opened(database_factory, limits) as (storage, hub):
        await add_books(storage, 5)
        holding = hub.watch(0)
        await take(holding, 1)  # a snapshot under way, holding the only slot
        with pytest.raises(Unavailable, match="snapshots, its limit"):
            await anext(hub.watch(0))
        assert hub.snapshot_count == 1

        live = hub.watch(await storage.head_revision())
        waiting = asyncio.ensure_future(anext(live))
        await until(lambda: hub.live_count == 1, "the second watcher live")
        with pytest.raises(Unavailable, match="WatchBooks streams, its limit"):
            await anext(hub.watch(1))

        # Freed slots are taken again.
        await holding.aclose()
        waiting.cancel()
        await asyncio.wait({waiting})
        await live.aclose()
        assert (hub.watcher_count, hub.snapshot_count) == (0, 0)
        async with aclosing(hub.watch(0)) as again:
            assert len(await take(again, 5)) == 5


async def test_concurrent_snapshots_take_one_turn_per_pass_of_the_loop(
    database_factory: Callable[[], str],
) -> None:
    # Four snapshots stream at once into readers that never suspend (as into
    # large socket buffers); a ticker that yields every pass of the loop sees
    # how many events were sent between two of its passes.
    limits = WatchLimits(max_snapshots=4, snapshot_page=64)
    async with opened(database_factory, limits) as (storage, hub):
        await add_books(storage, 256)
        sent = 0

        async def read_snapshot() -> None:
            nonlocal sent
            async with aclosing(hub.watch(0)) as stream:
                for _ in range(256):
                    await anext(stream)
                    sent += 1

        readers = asyncio.gather(*(read_snapshot() for _ in range(4)))
        between: list[int] = []
        last = 0
        while not readers.done():
            await asyncio.sleep(0)
            between.append(sent - last)
            last = sent
        await readers
        assert sent == 4 * 256
        # At most one snapshot's slice of 16 per pass, not one slice per snapshot.
        assert max(between) <= 16, between


class CountingReads:
    """A storage that counts how many events its hub took from memory and from the log."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.from_memory = 0
        self.from_log = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def recent_events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        events = self._inner.recent_events_after(revision, limit)
        self.from_memory += len(events)
        return events

    async def events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        events = await self._inner.events_after(revision, limit)
        self.from_log += len(events)
        return events


async def test_own_commits_from_memory_and_others_from_the_log_reach_a_watcher_once_in_order(
    database_factory: Callable[[], str],
) -> None:
    # Two storages on one database, as two processes: the hub over the first takes its
    # own commits from memory and reads the other's from the log, interleaved.
    url = database_factory()
    storages = [open_storage(url, event_retention=0, pool_size=4) for _ in range(2)]
    for storage in storages:
        await storage.open()
    counted = CountingReads(storages[0])
    hub = EventHub(cast(Storage, counted), lambda event: event, asyncio.Event(), WatchLimits())
    writers, books_each = 8, 15
    total = writers * books_each
    try:
        await hub.start()
        start = hub.head
        stream = hub.watch(start)
        first = asyncio.ensure_future(anext(stream))
        await until(lambda: hub.live_count == 1, "the watcher live")
        await asyncio.gather(*(add_books(storages[n % 2], books_each) for n in range(writers)))
        seen = [await first, *await take(stream, total - 1)]
        logged = await storages[1].events_after(start, total)
    finally:
        await hub.stop()
        for storage in storages:
            await storage.close()
    assert revisions(seen) == list(range(start + 1, start + total + 1))
    assert seen == list(logged)  # what memory handed on is what the log holds
    assert counted.from_memory > 0
    assert counted.from_log > 0
