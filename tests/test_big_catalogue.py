"""A catalogue bigger than one page and a log pruned down to its newest events."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.support.clients import CONNECT_PROTO, GRPC_WEB, LIBRARIAN, aclose
from tests.support.data import isbn13
from tests.support.events import next_events, watch
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

BOOKS = 1001
# The server prunes its log every PRUNE_EVERY revisions down to this many newest events.
RETENTION = 10


@pytest.fixture(scope="module")
def big_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server keeping RETENTION events, holding BOOKS books titled B0, B1, ..."""
    server = server_factory(env={"LIBRARY_EVENT_RETENTION": str(RETENTION)})
    items = [pb.ImportBooksRequest(title=f"B{i}", author="A", isbn=isbn13()) for i in range(BOOKS)]
    with CONNECT_PROTO.sync_client(server.url) as client:
        result = client.import_books(iter(items), headers=LIBRARIAN)
    assert (result.created_count, list(result.failures)) == (BOOKS, [])
    return server


async def test_page_size_is_capped_at_1000(big_server: ServerProcess) -> None:
    async with GRPC_WEB.client(big_server.url) as client:
        first = await client.list_books(pb.ListBooksRequest(page_size=5000))
        rest = await client.list_books(
            pb.ListBooksRequest(page_size=5000, page_token=first.next_page_token)
        )
    assert len(first.books) == 1000
    assert first.total_size == BOOKS
    assert [b.title for b in rest.books] == [f"B{BOOKS - 1}"]
    assert rest.next_page_token == ""


async def test_pruned_revision_is_out_of_range(big_server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(big_server.url) as client:
        with pytest.raises(ConnectError) as pruned:
            await next_events(watch(client, 1), 1)
    assert pruned.value.code is Code.OUT_OF_RANGE
    assert "since_revision 0" in pruned.value.message


async def test_recent_revisions_still_resume(big_server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(big_server.url) as client:
        snapshot = watch(client, 0)
        events = await next_events(snapshot, BOOKS)
        await aclose(snapshot)
        head = events[0].revision
        recent = watch(client, head - RETENTION // 2)
        tail = await next_events(recent, RETENTION // 2)
        await aclose(recent)
    assert [e.book.title for e in events] == [f"B{i}" for i in range(BOOKS)]
    assert {e.revision for e in events} == {head}
    assert [e.book.title for e in tail] == [f"B{i}" for i in range(BOOKS - RETENTION // 2, BOOKS)]
    assert tail[-1].revision == head
