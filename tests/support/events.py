"""WatchBooks helpers: open a stream, read events with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.support.clients import STREAM_TIMEOUT_MS, present, when


def watch(client: LibraryServiceClient, since: int) -> AsyncIterator[pb.WatchBooksResponse]:
    """A WatchBooks stream that the server ends by itself if a test forgets it."""
    return aiter(
        client.watch_books(pb.WatchBooksRequest(since_revision=since), timeout_ms=STREAM_TIMEOUT_MS)
    )


@dataclass(frozen=True)
class Seen:
    """One event as a watcher saw it; the contract says each carries a book."""

    revision: int
    type: pb.EventType
    book: pb.Book

    @classmethod
    def of(cls, event: pb.BookEvent) -> Seen:
        """The event, with the book every event carries."""
        return cls(event.revision, event.type, present(event.book))

    def summary(self) -> tuple[int, int, int, str, bool, datetime]:
        """What two readings of one event must agree on."""
        book = self.book
        return (
            self.revision,
            int(self.type),
            book.id,
            book.isbn,
            book.available,
            when(book.update_time),
        )


async def next_events(
    stream: AsyncIterator[pb.WatchBooksResponse], count: int, seconds: float = 10.0
) -> list[Seen]:
    """The next ``count`` events of an open stream, which stays open."""
    async with asyncio.timeout(seconds):
        return [Seen.of(present((await anext(stream)).event)) for _ in range(count)]
