"""A server process killed with SIGKILL mid ImportBooks and mid WatchBooks loses nothing.

Each imported book is its own transaction: the books that exist afterwards
are exactly the first k items, whole, each with its CREATED event, and the
watcher resuming on another process with its last revision continues the log
without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.multiprocess.conftest import StartServers
from tests.multiprocess.watching import Follower, own_client
from tests.support.clients import LIBRARIAN, add_book, unique
from tests.support.data import isbn13

pytestmark = pytest.mark.anyio

IMPORT_ITEMS = 3000
KILL_AFTER_EVENTS = 40
AFTER_KILL_BOOKS = 5
DEADLINE_SECONDS = 60


async def test_sigkill_mid_import_and_watch(start_servers: StartServers) -> None:
    victim, survivor = start_servers(2)
    tag = unique("import")
    items = [
        pb.ImportBooksRequest(
            title=f"{tag} {i}", author="Crash Tester", isbn=isbn13(), published_year=1999
        )
        for i in range(IMPORT_ITEMS)
    ]
    killed = asyncio.Event()

    async def requests() -> AsyncIterator[pb.ImportBooksRequest]:
        for item in items:
            yield item
        # Keep the stream open, so the kill lands mid-stream even if the server was quick.
        await killed.wait()

    async def import_all() -> None:
        async with own_client(victim.url) as client:
            await client.import_books(requests(), headers=LIBRARIAN, timeout_ms=120_000)

    async with own_client(survivor.url) as client:
        first = await add_book(client, f"{tag}-before")  # revision 1 of the fresh database
    follower = Follower(last=1)
    async with asyncio.timeout(DEADLINE_SECONDS):
        watching = asyncio.create_task(follower.read(victim.url, count=10**6, idle=60))
        importing = asyncio.create_task(import_all())
        enough = asyncio.create_task(follower.until(KILL_AFTER_EVENTS))
        await asyncio.wait((enough, importing), return_when=asyncio.FIRST_COMPLETED)
        assert not importing.done(), importing
        victim.stop(signal.SIGKILL)
        killed.set()
        with pytest.raises(ConnectError):
            await importing
        await watching
        assert follower.errors, "the watch stream should fail when its server dies"
        seen_before_kill = len(follower.events)

        async with own_client(survivor.url) as client:
            later = [await add_book(client, f"{tag}-after") for _ in range(AFTER_KILL_BOOKS)]
            imported = await _books_titled(client, f"{tag} ")
        head = 1 + len(imported) + AFTER_KILL_BOOKS
        while follower.last < head:
            await follower.read(survivor.url, count=head - follower.last, idle=10)

    assert first.id < imported[0].id
    assert KILL_AFTER_EVENTS <= seen_before_kill <= len(imported) < IMPORT_ITEMS
    # Whole books, exactly a prefix of what was sent: nothing half-written, nothing skipped.
    assert [(b.title, b.author, b.isbn, b.published_year) for b in imported] == [
        (i.title, i.author, i.isbn, i.published_year) for i in items[: len(imported)]
    ]
    assert all(b.available for b in imported)
    # The resumed watcher: every committed event once, in order.
    assert [e.revision for e in follower.events] == list(range(2, head + 1))
    assert [(e.type, e.book.id) for e in follower.events] == [
        (pb.EventType.CREATED, b.id) for b in [*imported, *later]
    ]


async def _books_titled(client: LibraryServiceClient, prefix: str) -> list[pb.Book]:
    books: list[pb.Book] = []
    token = ""
    while True:
        page = await client.list_books(
            pb.ListBooksRequest(query=prefix, page_size=1000, page_token=token)
        )
        books.extend(b for b in page.books if b.title.startswith(prefix))
        token = page.next_page_token
        if not token:
            return books
