"""Concurrent writes as batches commit them: SIGKILL loses nothing acknowledged; failures alone.

With 32 writers at once, each process's writer (SQLite's thread, PostgreSQL's
task) commits batches back to back, so a SIGKILL lands in the middle of one:
the writes acknowledged before it must all be stored (with their event, in a
gapless log), and every stored write must be one a client sent. With
``--workers`` every worker's writer is mid-batch when all are killed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.domain.models import Book, BookFilter
from server.gen.library.v1 import library_pb as pb
from server.storage import open_storage
from tests.multiprocess.procs import workers_of
from tests.support.clients import CONNECT_PROTO, LIBRARIAN, book_request, present
from tests.support.data import isbn13
from tests.support.server import ServerProcess, wait_until
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

WRITERS = 32
KILL_AFTER = 300
PAIRS = 8


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigkill_mid_batch_keeps_exactly_the_acknowledged_writes(
    server_factory: Callable[..., ServerProcess], workers: int
) -> None:
    server = server_factory(args=("--workers", str(workers)))
    if workers > 1:
        wait_until(lambda: len(workers_of(server.pid)) == workers, 30, f"{workers} workers")
    sent: set[str] = set()
    acknowledged: dict[str, pb.Book] = {}

    async def write_until_killed() -> None:
        async with CONNECT_PROTO.client(server.url) as client:
            while True:
                request = book_request("durable", isbn=isbn13())
                sent.add(request.isbn)
                try:
                    answer = await client.create_book(request, headers=LIBRARIAN)
                except ConnectError:
                    return
                acknowledged[request.isbn] = present(answer.book)

    writers = [asyncio.ensure_future(write_until_killed()) for _ in range(WRITERS)]
    await until(lambda: len(acknowledged) >= KILL_AFTER, f"{KILL_AFTER} acknowledged writes")
    # The supervisor first, so it replaces no worker; then its workers, mid-batch.
    killed = workers_of(server.pid)
    server.stop(signal.SIGKILL)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(30):
        await asyncio.gather(*writers)

    storage = open_storage(server.database_url, event_retention=0, pool_size=2)
    await storage.open()
    try:
        head = await storage.head_revision()
        events = await storage.events_after(0, head + 1)
        stored = {b.isbn: b for b in await storage.list_books(BookFilter(), 0, head + 1)}
    finally:
        await storage.close()
    # Nothing acknowledged is lost, and it is stored exactly as it was answered.
    for isbn, book in acknowledged.items():
        assert isbn in stored, f"acknowledged book {isbn} was lost"
        assert stored[isbn].id == book.id
    # Nothing stored that nobody sent; each with one CREATED event, the log without gaps.
    assert set(stored) <= sent
    assert [e.revision for e in events] == list(range(1, head + 1))
    # (PostgreSQL hands out ids in insert order, revisions in commit order: compare by id.)
    assert sorted((e.book for e in events), key=by_id) == sorted(stored.values(), key=by_id)


def by_id(book: Book) -> int:
    """Sort key: the book's id."""
    return book.id


async def test_a_failing_write_among_concurrent_ones_fails_alone(server: ServerProcess) -> None:
    requests = [book_request("batch") for _ in range(WRITERS)]
    # Pairs with one ISBN: whichever commits first wins, the other alone is refused.
    for i in range(PAIRS):
        requests[2 * i + 1].isbn = requests[2 * i].isbn
    async with CONNECT_PROTO.client(server.url) as client:
        results = await asyncio.gather(
            *(client.create_book(r, headers=LIBRARIAN) for r in requests), return_exceptions=True
        )
        created = [present(r.book) for r in results if isinstance(r, pb.CreateBookResponse)]
        stored = [(await client.get_book(pb.GetBookRequest(id=b.id))).book for b in created]
    refused = [r for r in results if isinstance(r, ConnectError)]
    assert [e.code for e in refused] == [Code.ALREADY_EXISTS] * PAIRS
    assert len(created) == WRITERS - PAIRS
    assert sorted(b.isbn for b in created) == sorted({r.isbn for r in requests})
    assert stored == created
