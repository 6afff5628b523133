"""Concurrent writers on several processes; a watcher that keeps disconnecting misses nothing.

The log is checked three ways: the resuming watcher's events equal one
uninterrupted reading of the log; the log holds exactly one event per write
that succeeded; and replaying the log gives the catalogue as it now stands.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from datetime import datetime

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.multiprocess.conftest import StartServers
from tests.multiprocess.watching import Follower, read_log
from tests.support.clients import CONNECT_PROTO, LIBRARIAN, add_book, add_member, when
from tests.support.events import Seen

pytestmark = pytest.mark.anyio

SERVERS = 3
WRITERS = 6
ROUNDS = 10
DEADLINE_SECONDS = 90


async def test_resuming_watcher_ends_with_exactly_the_log(start_servers: StartServers) -> None:
    servers = start_servers(SERVERS)
    urls = [s.url for s in servers]
    rng = random.Random(7)
    written: list[tuple[pb.EventType, int]] = []
    writers_done = asyncio.Event()
    # Every write that succeeds appends exactly one event; the shared book adds contention.
    async with CONNECT_PROTO.client(urls[0]) as setup:
        shared = await add_book(setup, "shared")  # revision 1 of the fresh database
        written.append((pb.EventType.CREATED, shared.id))
        members = [(await add_member(setup))[1] for _ in range(WRITERS)]

    async def write(client: LibraryServiceClient, number: int) -> None:
        me = members[number]
        for round_ in range(ROUNDS):
            book = await add_book(client, f"w{number}-{round_}")
            written.append((pb.EventType.CREATED, book.id))
            for target in (book.id, shared.id):
                refused = await _refused(
                    client.checkout_book(pb.CheckoutBookRequest(id=target), headers=me)
                )
                if refused is not None:
                    assert refused is Code.FAILED_PRECONDITION
                    continue
                written.append((pb.EventType.UPDATED, target))
                await client.return_book(pb.ReturnBookRequest(id=target), headers=me)
                written.append((pb.EventType.UPDATED, target))
            if round_ % 2:
                await client.delete_book(pb.DeleteBookRequest(id=book.id), headers=LIBRARIAN)
                written.append((pb.EventType.DELETED, book.id))

    async def writers() -> None:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(CONNECT_PROTO.client(u)) for u in urls]
            await asyncio.gather(*(write(clients[n % SERVERS], n) for n in range(WRITERS)))
        writers_done.set()

    follower = Follower(last=1)

    async def follow() -> None:
        turn = 0
        while not (writers_done.is_set() and follower.last >= len(written)):
            await follower.read(urls[turn % SERVERS], count=rng.randint(5, 40), idle=0.5)
            turn += 1

    async with asyncio.timeout(DEADLINE_SECONDS):
        await asyncio.gather(writers(), follow())
        head = len(written)
        log = await read_log(urls[2], since=1, count=head - 1)
        catalogue = await _all_books(urls[1])

    assert [e.revision for e in follower.events] == list(range(2, head + 1))
    assert [e.summary() for e in follower.events] == [e.summary() for e in log]
    assert follower.connections > 2 * SERVERS, "the watcher should have resumed many times"
    logged = Counter((e.type, e.book.id) for e in log)
    logged[(pb.EventType.CREATED, shared.id)] += 1
    assert logged == Counter(written)
    assert _replay(shared, log) == {b.id: (b.available, when(b.update_time)) for b in catalogue}


async def _refused(call: Awaitable[object]) -> Code | None:
    """The error code of a call, or None when it succeeded."""
    try:
        await call
    except ConnectError as e:
        return e.code
    return None


def _replay(first: pb.Book, log: list[Seen]) -> dict[int, tuple[bool, datetime]]:
    books = {first.id: (first.available, when(first.update_time))}
    for event in log:
        if event.type == pb.EventType.DELETED:
            del books[event.book.id]
        else:
            books[event.book.id] = (event.book.available, when(event.book.update_time))
    return books


async def _all_books(url: str) -> list[pb.Book]:
    async with CONNECT_PROTO.client(url) as client:
        books: list[pb.Book] = []
        token = ""
        while True:
            page = await client.list_books(pb.ListBooksRequest(page_size=1000, page_token=token))
            books.extend(page.books)
            token = page.next_page_token
            if not token:
                return books
