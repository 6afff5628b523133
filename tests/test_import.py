"""ImportBooks: a client stream whose bad items are reported by index, not fatal."""

from __future__ import annotations

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.support.clients import (
    CONNECT_PROTO,
    LIBRARIAN,
    Wire,
    add_book,
    over_all_wires,
    stream_of,
    unique,
)
from tests.support.data import isbn13
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio


@over_all_wires
async def test_good_items_are_created_and_bad_ones_reported(
    server: ServerProcess, wire: Wire
) -> None:
    tag = unique()
    first_isbn, last_isbn, existing_isbn = isbn13(), isbn13(), isbn13()
    items = [
        pb.ImportBooksRequest(title=f"{tag} one", author="A", isbn=first_isbn, published_year=1999),
        pb.ImportBooksRequest(title=f"{tag} bad isbn", author="A", isbn="9780306406158"),
        pb.ImportBooksRequest(title="", author="A", isbn=isbn13()),
        pb.ImportBooksRequest(
            title=f"{tag} two", author="B", isbn=f"{last_isbn[:3]}-{last_isbn[3:]}"
        ),
        pb.ImportBooksRequest(title=f"{tag} again", author="A", isbn=first_isbn),
        pb.ImportBooksRequest(title=f"{tag} known", author="A", isbn=existing_isbn),
        pb.ImportBooksRequest(title=f"{tag} no author", isbn=isbn13()),
    ]
    async with wire.client(server.url) as client:
        await add_book(client, isbn=existing_isbn)
        result = await client.import_books(stream_of(items), headers=LIBRARIAN)
        listed = await client.list_books(pb.ListBooksRequest(query=tag))
    assert result.created_count == 2
    assert [(f.index, f.isbn) for f in result.failures] == [
        (1, "9780306406158"),
        (2, items[2].isbn),
        (4, first_isbn),
        (5, existing_isbn),
        (6, items[6].isbn),
    ]
    reasons = [f.reason for f in result.failures]
    assert "check digit" in reasons[0]
    assert "title" in reasons[1]
    assert "exists" in reasons[2]
    assert "exists" in reasons[3]
    assert "author" in reasons[4]
    assert [(b.title, b.isbn, b.published_year) for b in listed.books] == [
        (f"{tag} one", first_isbn, 1999),
        (f"{tag} two", last_isbn, 0),
    ]


def test_sync_client_imports(server: ServerProcess) -> None:
    tag = unique()
    items = [pb.ImportBooksRequest(title=f"{tag} {i}", author="A", isbn=isbn13()) for i in range(3)]
    with CONNECT_PROTO.sync_client(server.url) as client:
        result = client.import_books(iter(items), headers=LIBRARIAN)
        empty = client.import_books(iter([]), headers=LIBRARIAN)
        listed = client.list_books(pb.ListBooksRequest(query=tag))
    assert (result.created_count, list(result.failures)) == (3, [])
    assert (empty.created_count, list(empty.failures)) == (0, [])
    assert listed.total_size == 3


async def test_import_needs_a_librarian(server: ServerProcess) -> None:
    tag = unique()
    items = [pb.ImportBooksRequest(title=tag, author="A", isbn=isbn13())]
    async with CONNECT_PROTO.client(server.url) as client:
        with pytest.raises(ConnectError) as refused:
            await client.import_books(stream_of(items))
        listed = await client.list_books(pb.ListBooksRequest(query=tag))
    assert refused.value.code is Code.UNAUTHENTICATED
    assert listed.total_size == 0
