"""GetBook's per-process cache: a process reads its own writes at once, others' within a bound.

The bound is how soon a process notices another's commit: PostgreSQL's NOTIFY
(milliseconds), SQLite's head poll (0.1 s); the README states it as 1 s, the
hub's own re-check if a wake-up is lost.
"""

from __future__ import annotations

import time

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.multiprocess.conftest import StartServers
from tests.support.clients import (
    CONNECT_PROTO,
    LIBRARIAN,
    add_book,
    add_member,
    checkout,
    get_book,
    give_back,
)
from tests.support.server import ServerFactory, ServerProcess

pytestmark = pytest.mark.anyio

ROUNDS = 20
STALENESS_BOUND_SECONDS = 1.0


async def test_a_process_reads_its_own_writes_and_anothers_within_the_bound(
    start_servers: StartServers,
) -> None:
    here, there = start_servers(2)
    async with CONNECT_PROTO.client(here.url) as near, CONNECT_PROTO.client(there.url) as far:
        book = await add_book(near)
        _, member = await add_member(near)
        delays = []
        for _ in range(ROUNDS):
            # Warm both caches with the current state.
            assert (await get_book(near, book.id)).available
            assert (await get_book(far, book.id)).available
            # The writer's own process answers with the new state at once, every time.
            await checkout(near, book.id, member)
            assert not (await get_book(near, book.id)).available
            # The other process notices within the bound, and never goes back.
            started = time.monotonic()
            while (await get_book(far, book.id)).available:
                assert time.monotonic() - started < STALENESS_BOUND_SECONDS
            delays.append(time.monotonic() - started)
            assert not (await get_book(far, book.id)).available
            await give_back(far, book.id, member)
            assert (await get_book(far, book.id)).available
            started = time.monotonic()
            while not (await get_book(near, book.id)).available:
                assert time.monotonic() - started < STALENESS_BOUND_SECONDS
        await near.delete_book(pb.DeleteBookRequest(id=book.id), headers=LIBRARIAN)
        started = time.monotonic()
        while True:
            try:
                await get_book(far, book.id)
            except ConnectError as e:
                gone = e.code
                break
            assert time.monotonic() - started < STALENESS_BOUND_SECONDS
    assert gone is Code.NOT_FOUND
    assert max(delays) < STALENESS_BOUND_SECONDS


async def test_with_the_cache_off_every_read_sees_every_commit(servers: ServerFactory) -> None:
    off = {"LIBRARY_BOOK_CACHE": "0"}
    here = servers.start(ServerProcess, env=off)
    there = servers.start(ServerProcess, here.database_url, env=off)
    async with CONNECT_PROTO.client(here.url) as near, CONNECT_PROTO.client(there.url) as far:
        book = await add_book(near)
        _, member = await add_member(near)
        for _ in range(3):
            assert (await get_book(far, book.id)).available
            await checkout(near, book.id, member)
            # No cache: the other process reads the database, so it is never behind.
            assert not (await get_book(far, book.id)).available
            assert not (await get_book(near, book.id)).available
            await give_back(near, book.id, member)
            assert (await get_book(near, book.id)).available
