"""A watcher on one process hears about changes made through the others within a second."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest

from server.gen.library.v1 import library_pb as pb
from tests.multiprocess.conftest import StartServers
from tests.multiprocess.watching import STREAM_TIMEOUT_MS
from tests.support.clients import CONNECT_PROTO, aclose, add_book, add_member, present
from tests.support.events import Seen

pytestmark = pytest.mark.anyio

LATENCY_LIMIT_SECONDS = 1.0
CHANGES = 6


async def test_watcher_sees_other_processes_changes_within_a_second(
    start_servers: StartServers,
) -> None:
    watched, *writers = start_servers(3)
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(CONNECT_PROTO.client(watched.url))
        clients = [await stack.enter_async_context(CONNECT_PROTO.client(w.url)) for w in writers]
        _, member = await add_member(clients[0])
        stream = watcher.watch_books(
            pb.WatchBooksRequest(since_revision=0), timeout_ms=STREAM_TIMEOUT_MS
        )
        events = aiter(stream)
        try:
            # Whether it arrives in the snapshot or live, once this is read the stream is live.
            first = await add_book(clients[0], "warm-up")
            warm_up = Seen.of(present((await asyncio.wait_for(anext(events), 10)).event))
            assert warm_up.book.id == first.id

            latencies = []
            for i in range(CHANGES):
                client = clients[i % len(clients)]
                if i % 2 == 0:
                    book = await add_book(client, f"live {i}")
                    expected = (pb.EventType.CREATED, book.id, True)
                else:
                    out = await client.checkout_book(
                        pb.CheckoutBookRequest(id=book.id), headers=member
                    )
                    expected = (pb.EventType.UPDATED, present(out.book).id, False)
                # The change is committed once the write has answered; the clock starts there.
                started = time.monotonic()
                got = Seen.of(present((await asyncio.wait_for(anext(events), 10)).event))
                latencies.append(time.monotonic() - started)
                assert (got.type, got.book.id, got.book.available) == expected
        finally:
            await aclose(stream)
    assert max(latencies) < LATENCY_LIMIT_SECONDS, latencies
