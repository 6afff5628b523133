"""``serve --workers N``: worker processes behind one socket share the database's promises."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.multiprocess.conftest import StartServers
from tests.multiprocess.procs import holding_connection, workers_of
from tests.multiprocess.watching import Follower, own_client
from tests.support.clients import CONNECT_PROTO, add_book, add_member
from tests.support.server import wait_until

pytestmark = pytest.mark.anyio

WORKERS = 3
CHECKOUTS = 30


async def test_workers_check_out_exactly_once(start_servers: StartServers) -> None:
    (server,) = start_servers(1, args=("--workers", str(WORKERS)))
    wait_until(lambda: len(workers_of(server.pid)) == WORKERS, 30, f"{WORKERS} workers")
    async with CONNECT_PROTO.client(server.url) as client:
        book = await add_book(client, "contested")
        _, member = await add_member(client)

    async def checkout() -> Code | None:
        # A connection each, so the kernel spreads them over the workers.
        async with own_client(server.url) as own:
            try:
                await own.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=member)
            except ConnectError as e:
                return e.code
        return None

    outcomes = await asyncio.gather(*(checkout() for _ in range(CHECKOUTS)))
    assert Counter(outcomes) == {None: 1, Code.FAILED_PRECONDITION: CHECKOUTS - 1}


async def test_killed_worker_is_replaced_and_its_watcher_resumes(
    start_servers: StartServers,
) -> None:
    (server,) = start_servers(1, args=("--workers", str(WORKERS)))
    wait_until(lambda: len(workers_of(server.pid)) == WORKERS, 30, f"{WORKERS} workers")
    async with own_client(server.url) as client:
        first = await add_book(client, "first")  # revision 1 of the fresh database
    follower = Follower(last=1)
    async with asyncio.timeout(60):
        watching = asyncio.create_task(follower.read(server.url, count=10**6, idle=60))
        async with own_client(server.url) as writer:
            before = [await add_book(writer, "before")]
        await follower.until(1)
        # Once the other connections are gone, only the watcher's worker holds one.
        wait_until(
            lambda: len(holding_connection(workers_of(server.pid), server.port)) == 1,
            10,
            "only the watcher's connection to be left",
        )
        (victim,) = holding_connection(workers_of(server.pid), server.port)
        os.kill(victim, signal.SIGKILL)
        await watching
        assert follower.errors, "the watch stream should fail when its worker dies"

    async with asyncio.timeout(60), own_client(server.url) as writer:
        after = [await add_book(writer, f"after {i}") for i in range(5)]
        while follower.last < 1 + len(before) + len(after):
            await follower.read(server.url, count=10**6, idle=2)
    wait_until(
        lambda: len(workers_of(server.pid)) == WORKERS and victim not in workers_of(server.pid),
        30,
        "the supervisor to replace the killed worker",
    )
    assert [(e.revision, e.type, e.book.id) for e in follower.events] == [
        (revision, pb.EventType.CREATED, book.id)
        for revision, book in enumerate([*before, *after], start=2)
    ]
    assert first.id < before[0].id
