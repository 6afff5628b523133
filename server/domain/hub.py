"""The WatchBooks feed: one reader of the change log per process, fanned out to every watcher.

One task follows the log (woken by this process's commits, by NOTIFY on
PostgreSQL, by one poller on SQLite), encodes each event once and appends it to
every watcher's bounded queue. A waiting watcher costs one parked future: no
timer, no poll, no query of its own. A watcher whose queue fills up (a client
that does not read) is ended with Unavailable and resumes by revision.

A new watcher first reads what it missed from the log itself (a snapshot for
``since_revision = 0``, then a replay); once it has caught up with the reader,
it joins the fan-out in the same step, with no await in between, so no event
falls between the replay and the live queue. Events it already has are skipped
by revision.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Generic, TypeVar

from server.domain.book_cache import BookCache
from server.domain.errors import InvalidArgument, OutOfRange, Unavailable
from server.domain.models import Book, BookEvent, EventType
from server.domain.storage import Storage

log = logging.getLogger("library.hub")

T = TypeVar("T")

_BATCH = 500
# A safety net, once per process: how long the reader waits before it looks at
# the log by itself, in case a wake-up from another process was missed.
_RECHECK_SECONDS = 1.0
_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0)
_SNAPSHOT_SLICE = 16


@dataclass(frozen=True, slots=True)
class WatchLimits:
    """Per-process bounds on watchers, concurrent snapshots and each watcher's backlog."""

    max_watchers: int = 20_000
    max_snapshots: int = 8
    queue_size: int = 1_000
    snapshot_page: int = 200
    # How long a snapshot may wait for a free slot before it is refused: enough
    # for a burst of page loads to take turns, short enough to refuse a flood.
    snapshot_wait: float = 2.0


class _Watcher(Generic[T]):
    """One stream's queue of (revision, encoded event) and how its caller is woken."""

    __slots__ = ("ended", "overflowed", "queue", "wakeup")

    def __init__(self) -> None:
        self.queue: deque[tuple[int, T]] = deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.ended = False
        self.overflowed = False

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def end(self, *, overflowed: bool = False) -> None:
        self.ended = True
        self.overflowed = overflowed
        self.wake()


class EventHub(Generic[T]):
    """Every committed event, in revision order, to every watcher of this process.

    ``encode`` turns an event into what watchers yield (the RPC layer passes its
    wire message), so a live event is converted once, however many watch it.
    ``share``, if given, is told each live item before any watcher gets it (the
    RPC layer then serialises it once for all streams).
    ``cache``, if given, has every event applied before watchers get it.
    """

    def __init__(
        self,
        storage: Storage,
        encode: Callable[[BookEvent], T],
        draining: asyncio.Event,
        limits: WatchLimits | None = None,
        cache: BookCache | None = None,
        share: Callable[[T], None] | None = None,
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._encode = encode
        self._share = share
        self._draining = draining
        self._limits = limits or WatchLimits()
        self._head = 0
        self._watchers: set[_Watcher[T]] = set()
        self._active = 0
        self._snapshot_slots = asyncio.Semaphore(self._limits.max_snapshots)
        self._snapshots = 0
        self._snapshot_turn = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def head(self) -> int:
        """The newest revision handed to this process's watchers."""
        return self._head

    @property
    def watcher_count(self) -> int:
        """Open WatchBooks streams in this process, catching up or live."""
        return self._active

    @property
    def live_count(self) -> int:
        """Watchers that have caught up and take their events from the fan-out."""
        return len(self._watchers)

    @property
    def snapshot_count(self) -> int:
        """Snapshots being streamed right now."""
        return self._snapshots

    async def start(self) -> None:
        """Start following the log from its current head."""
        self._follow_from(await self._storage.head_revision())
        self._tasks = [
            asyncio.create_task(self._follow(), name="library-event-hub"),
            asyncio.create_task(self._end_on_drain(), name="library-event-hub-drain"),
        ]

    async def stop(self) -> None:
        """End every watcher and stop following the log."""
        self._end_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def watch(self, since_revision: int) -> AsyncGenerator[T, None]:
        """Every event after ``since_revision`` (a snapshot first for 0), then live ones.

        Ends normally when the server drains, so clients resume elsewhere with
        the last revision they saw; Unavailable past a cap or when the caller
        falls too far behind.
        """
        if since_revision < 0:
            raise InvalidArgument(f"since_revision must not be negative, got {since_revision}")
        if self._active >= self._limits.max_watchers:
            raise Unavailable(
                f"this server has {self._limits.max_watchers} open WatchBooks streams,"
                " its limit; retry shortly or on another server"
            )
        self._active += 1
        watcher: _Watcher[T] | None = None
        try:
            last = since_revision
            if since_revision == 0:
                async with aclosing(self._snapshot()) as pages:
                    async for head, books in pages:
                        last = head
                        for i, book in enumerate(books):
                            if i % _SNAPSHOT_SLICE == 0:
                                await self._take_turns()
                            # Converted one at a time: a stream stuck on a client that
                            # does not read holds one wire message, not a page of them.
                            yield self._encode(BookEvent(head, EventType.CREATED, book))
            while watcher is None:
                # At the hub's head nothing can be missed (the hub hands every later
                # event to its watchers), so a stream opened there reads nothing.
                # Elsewhere this fails fast with OutOfRange when the log no longer
                # holds what follows.
                events = (
                    [] if last == self._head else await self._storage.events_after(last, _BATCH)
                )
                for event in events:
                    yield self._encode(event)
                    last = event.revision
                if self._draining.is_set():
                    return
                if len(events) < _BATCH and last >= self._head:
                    watcher = _Watcher()
                    self._watchers.add(watcher)
            while True:
                if watcher.queue:
                    revision, item = watcher.queue.popleft()
                    if revision > last:
                        yield item
                        last = revision
                elif watcher.overflowed:
                    raise Unavailable(
                        f"this stream fell more than {self._limits.queue_size} events behind;"
                        f" resume with since_revision = {last}"
                    )
                elif watcher.ended:
                    return
                else:
                    watcher.wakeup = asyncio.get_running_loop().create_future()
                    await watcher.wakeup
                    watcher.wakeup = None
        finally:
            self._active -= 1
            if watcher is not None:
                self._watchers.discard(watcher)

    async def _snapshot(self) -> AsyncGenerator[tuple[int, Sequence[Book]], None]:
        """The snapshot's revision and a page of its books, page by page."""
        try:
            await asyncio.wait_for(self._snapshot_slots.acquire(), self._limits.snapshot_wait)
        except TimeoutError:
            raise Unavailable(
                f"this server is streaming {self._limits.max_snapshots} snapshots, its limit;"
                " retry shortly"
            ) from None
        self._snapshots += 1
        try:
            pages = self._storage.snapshot_pages(self._limits.snapshot_page)
            async with aclosing(pages):
                async for page in pages:
                    yield page
        finally:
            self._snapshots -= 1
            self._snapshot_slots.release()

    async def _take_turns(self) -> None:
        """Wait for this snapshot's turn to send its next slice: one slice per pass of the loop.

        Sending rarely suspends (socket buffers are large), so snapshots yield
        before every slice; and they queue for their turn, so however many
        stream at once, other requests wait for about one slice, not one per
        snapshot. The turn is held only across this one pass, never across a send.
        """
        async with self._snapshot_turn:
            await asyncio.sleep(0)

    def _follow_from(self, head: int) -> None:
        self._head = head
        if self._cache is not None:
            self._cache.reset(head)

    def _publish(self, event: BookEvent) -> None:
        if self._cache is not None:
            self._cache.apply(event)
        if not self._watchers:
            # Nobody to hand it to: a stream opened later reads it from the log.
            self._head = event.revision
            return
        item = self._encode(event)
        if self._share is not None:
            self._share(item)
        revision = event.revision
        entry = (revision, item)  # one tuple for every queue
        limit = self._limits.queue_size
        behind: list[_Watcher[T]] = []
        for watcher in self._watchers:
            if len(watcher.queue) >= limit:
                behind.append(watcher)
            else:
                watcher.queue.append(entry)
                watcher.wake()
        for watcher in behind:
            self._watchers.discard(watcher)
            watcher.end(overflowed=True)
        if behind:
            log.warning("ended %d WatchBooks streams that fell behind", len(behind))
        self._head = revision

    async def _follow(self) -> None:
        """Read the log after the head for everyone; wait for a wake-up when it is read."""
        failures = 0
        lost = False
        while True:
            try:
                if lost:
                    self._follow_from(await self._storage.head_revision())
                    lost = False
                await self._storage.wait_for_events(self._head, _RECHECK_SECONDS)
                while True:
                    # This process's own commits come from memory; the log is read
                    # when another process's commit comes next (or after a miss).
                    events = self._storage.recent_events_after(self._head, _BATCH)
                    if not events:
                        events = await self._storage.events_after(self._head, _BATCH)
                    for event in events:
                        self._publish(event)
                    if len(events) < _BATCH:
                        break
                    # A backlog: let watchers drain their queues between batches.
                    await asyncio.sleep(0)
                failures = 0
            except OutOfRange as e:
                # The log was pruned past this reader (or replaced): watchers would
                # miss events, so end them; they resume by revision and learn why.
                log.warning("the event log cannot continue from %d: %s", self._head, e.message)
                self._end_all()
                lost = True
            except Exception:
                log.exception("cannot read the event log; retrying")
                await asyncio.sleep(_RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)])
                failures += 1

    async def _end_on_drain(self) -> None:
        await self._draining.wait()
        self._end_all()

    def _end_all(self) -> None:
        watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher.end()
