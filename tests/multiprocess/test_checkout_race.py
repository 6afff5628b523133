"""Exactly-once checkout when the competing calls reach different server processes."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.multiprocess.conftest import StartServers
from tests.multiprocess.watching import read_log
from tests.support.clients import CONNECT_PROTO, LIBRARIAN, add_book, add_member, present

pytestmark = pytest.mark.anyio

SERVERS = 3
CHECKOUTS = 50
MEMBERS = 10


async def test_one_of_50_checkouts_across_processes_wins(start_servers: StartServers) -> None:
    servers = start_servers(SERVERS)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(CONNECT_PROTO.client(s.url)) for s in servers]
        book = await add_book(clients[0], "contested")
        members = [await add_member(clients[i % SERVERS]) for i in range(MEMBERS)]

        async def checkout(i: int) -> pb.CheckoutBookResponse | ConnectError:
            try:
                return await clients[i % SERVERS].checkout_book(
                    pb.CheckoutBookRequest(id=book.id), headers=members[i % MEMBERS][1]
                )
            except ConnectError as e:
                return e

        outcomes = await asyncio.gather(*(checkout(i) for i in range(CHECKOUTS)))
        loans = await clients[1].list_loans(
            pb.ListLoansRequest(active_only=True, page_size=1000), headers=LIBRARIAN
        )
        after = await clients[2].get_book(pb.GetBookRequest(id=book.id))
        # On this fresh database the snapshot's revision is the number of events
        # (revisions have no gaps): the book's CREATED and one UPDATED.
        (snapshot,) = await read_log(servers[2].url, since=0, count=1)
        (checked_out,) = await read_log(servers[0].url, since=1, count=1)

    wins = [o for o in outcomes if isinstance(o, pb.CheckoutBookResponse)]
    refusals = [o for o in outcomes if isinstance(o, ConnectError)]
    assert len(wins) == 1
    assert [r.code for r in refusals] == [Code.FAILED_PRECONDITION] * (CHECKOUTS - 1)
    assert [loan.id for loan in loans.loans if loan.book_id == book.id] == [
        present(wins[0].loan).id
    ]
    assert not present(after.book).available
    assert snapshot.revision == 2
    assert (checked_out.type, checked_out.book.available) == (pb.EventType.UPDATED, False)
