"""The write gate over gRPC on HTTP/2: a write past the line is refused, reads go on."""

from __future__ import annotations

import asyncio

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from pyqwest import Client, HTTPTransport, HTTPVersion

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.support.clients import LIBRARIAN, add_book, book_request, get_book, present, unique
from tests.support.held_writes import writes_held
from tests.support.server import Http2Server, ServerFactory
from tests.support.waiting import DEADLINE_SECONDS

pytestmark = pytest.mark.anyio


async def test_grpc_write_past_the_line_is_refused_and_reads_go_on(servers: ServerFactory) -> None:
    server = servers.start(
        Http2Server,
        env={"LIBRARY_MAX_WRITES_IN_PROGRESS": "1", "LIBRARY_MAX_WAITING_WRITES": "0"},
    )
    transport = HTTPTransport(http_version=HTTPVersion.HTTP2)
    client = LibraryServiceClient(
        server.url, protocol=ProtocolType.GRPC, http_client=Client(transport)
    )
    tag = unique()
    shelved = await add_book(client, "shelved")
    async with writes_held(server.database_url):
        calls = [
            asyncio.create_task(client.create_book(book_request(f"{tag} {i}"), headers=LIBRARIAN))
            for i in range(2)
        ]
        async with asyncio.timeout(DEADLINE_SECONDS):
            done, pending = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        refused = done.pop()
        error = refused.exception()
        assert isinstance(error, ConnectError)
        assert error.code is Code.UNAVAILABLE
        assert "LIBRARY_MAX_WAITING_WRITES" in error.message
        assert (await get_book(client, shelved.id)).title == shelved.title
        waiting = pending.pop()
        assert not waiting.done()
    created = present((await waiting).book)
    # The refused write wrote nothing.
    found = await client.list_books(pb.ListBooksRequest(query=tag))
    assert [b.id for b in found.books] == [created.id]
    await client.close()
    await transport.aclose()
