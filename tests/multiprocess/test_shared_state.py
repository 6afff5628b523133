"""Processes on one database share what clients carry between calls: page tokens."""

from __future__ import annotations

import pytest

from server.gen.library.v1 import library_pb as pb
from tests.multiprocess.conftest import StartServers
from tests.support.clients import CONNECT_PROTO, add_books, unique

pytestmark = pytest.mark.anyio

BOOKS = 5


async def test_page_token_from_one_process_works_on_another(start_servers: StartServers) -> None:
    first, second = start_servers(2)
    tag = unique()
    async with CONNECT_PROTO.client(first.url) as one, CONNECT_PROTO.client(second.url) as two:
        books = await add_books(one, tag, BOOKS)
        page1 = await one.list_books(pb.ListBooksRequest(query=tag, page_size=2))
        page2 = await two.list_books(
            pb.ListBooksRequest(query=tag, page_size=2, page_token=page1.next_page_token)
        )
    assert [b.id for b in [*page1.books, *page2.books]] == [b.id for b in books[:4]]
    assert page2.total_size == BOOKS
