"""ListBooks paging: sizes, opaque tokens, filters, and stability under concurrent inserts."""

from __future__ import annotations

import asyncio

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.support.clients import (
    CONNECT_PROTO,
    LIBRARIAN,
    Wire,
    add_book,
    add_books,
    add_member,
    over_all_wires,
    stream_of,
    unique,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio


async def import_tagged(client: LibraryServiceClient, tag: str, count: int) -> None:
    """Create ``count`` books whose titles contain ``tag``, in one ImportBooks stream."""
    from tests.support.data import isbn13

    items = [
        pb.ImportBooksRequest(title=f"{tag} {i}", author="A", isbn=isbn13()) for i in range(count)
    ]
    result = await client.import_books(stream_of(items), headers=LIBRARIAN)
    assert result.created_count == count


async def list_all(
    client: LibraryServiceClient, request: pb.ListBooksRequest
) -> tuple[list[pb.Book], int]:
    """Every page of a listing, and how many pages it took."""
    books: list[pb.Book] = []
    pages = 0
    while True:
        page = await client.list_books(request)
        books.extend(page.books)
        pages += 1
        if not page.next_page_token:
            return books, pages
        request = pb.ListBooksRequest(
            page_size=request.page_size,
            page_token=page.next_page_token,
            query=request.query,
            available_only=request.available_only,
        )


@over_all_wires
async def test_pages_follow_tokens_to_the_end(server: ServerProcess, wire: Wire) -> None:
    tag = unique()
    async with wire.client(server.url) as client:
        created = await add_books(client, tag, 7)
        first = await client.list_books(
            pb.ListBooksRequest(page_size=3, query=tag), use_get=wire.can_get
        )
        books, pages = await list_all(client, pb.ListBooksRequest(page_size=3, query=tag))
    assert [b.id for b in first.books] == [b.id for b in created[:3]]
    assert first.total_size == 7
    assert first.next_page_token
    assert [b.id for b in books] == [b.id for b in created]
    assert pages == 3


async def test_page_size_zero_means_fifty(server: ServerProcess) -> None:
    tag = unique()
    async with CONNECT_PROTO.client(server.url) as client:
        await import_tagged(client, tag, 60)
        first = await client.list_books(pb.ListBooksRequest(query=tag))
        rest = await client.list_books(
            pb.ListBooksRequest(query=tag, page_token=first.next_page_token)
        )
    assert len(first.books) == 50
    assert first.total_size == 60
    assert len(rest.books) == 10
    assert rest.next_page_token == ""
    assert rest.total_size == 60


async def test_exact_fit_has_no_next_page(server: ServerProcess) -> None:
    tag = unique()
    async with CONNECT_PROTO.client(server.url) as client:
        await add_books(client, tag, 4)
        page = await client.list_books(pb.ListBooksRequest(page_size=4, query=tag))
    assert len(page.books) == 4
    assert page.next_page_token == ""


async def test_available_only_hides_books_on_loan(server: ServerProcess) -> None:
    tag = unique()
    async with CONNECT_PROTO.client(server.url) as client:
        books = await add_books(client, tag, 3)
        _, member = await add_member(client)
        await client.checkout_book(pb.CheckoutBookRequest(id=books[1].id), headers=member)
        available = await client.list_books(pb.ListBooksRequest(query=tag, available_only=True))
        everything = await client.list_books(pb.ListBooksRequest(query=tag))
    assert [b.id for b in available.books] == [books[0].id, books[2].id]
    assert available.total_size == 2
    assert everything.total_size == 3
    assert [b.available for b in everything.books] == [True, False, True]


@over_all_wires
async def test_bad_paging_is_invalid_argument(server: ServerProcess, wire: Wire) -> None:
    tag = unique()
    async with wire.client(server.url) as client:
        await add_books(client, tag, 3)
        first = await client.list_books(pb.ListBooksRequest(page_size=1, query=tag))
        token = first.next_page_token
        payload, signature = token.split(".")
        tampered = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature
        bad_requests = {
            "negative page_size": pb.ListBooksRequest(page_size=-1),
            "garbage token": pb.ListBooksRequest(page_token="not-a-token"),
            "forged token": pb.ListBooksRequest(page_token="eyJhIjoxfQ.AAAAAAAAAAAAAAAAAAAAAA"),
            "tampered token": pb.ListBooksRequest(page_size=1, query=tag, page_token=tampered),
            "non-ascii token": pb.ListBooksRequest(page_token="é.é"),
            "other query": pb.ListBooksRequest(page_size=1, query=tag + "x", page_token=token),
            "other filter": pb.ListBooksRequest(
                page_size=1, query=tag, available_only=True, page_token=token
            ),
        }
        codes = {}
        for name, request in bad_requests.items():
            with pytest.raises(ConnectError) as refused:
                await client.list_books(request)
            codes[name] = refused.value.code
        # The token still works for the query it was issued for.
        second = await client.list_books(
            pb.ListBooksRequest(page_size=1, query=tag, page_token=token)
        )
    assert codes == dict.fromkeys(bad_requests, Code.INVALID_ARGUMENT)
    assert len(second.books) == 1


async def test_a_loans_token_does_not_page_books(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        _, member = await add_member(client)
        for _ in range(2):
            book = await add_book(client)
            await client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=member)
        loans = await client.list_loans(pb.ListLoansRequest(page_size=1), headers=member)
        with pytest.raises(ConnectError) as refused:
            await client.list_books(
                pb.ListBooksRequest(page_size=1, page_token=loans.next_page_token)
            )
    assert refused.value.code is Code.INVALID_ARGUMENT


async def test_pages_are_stable_while_books_are_inserted(server: ServerProcess) -> None:
    tag = unique()
    async with (
        CONNECT_PROTO.client(server.url) as reader,
        CONNECT_PROTO.client(server.url) as writer,
    ):
        before = await add_books(writer, tag, 30)
        inserted: list[pb.Book] = []
        paging_done = asyncio.Event()

        async def insert_while_paging() -> None:
            while not paging_done.is_set():
                inserted.append(await add_book(writer, f"{tag} late"))

        async def page_through() -> list[pb.Book]:
            try:
                books: list[pb.Book] = []
                token = ""
                while True:
                    page = await reader.list_books(
                        pb.ListBooksRequest(page_size=4, query=tag, page_token=token)
                    )
                    books.extend(page.books)
                    token = page.next_page_token
                    if not token:
                        return books
            finally:
                paging_done.set()

        seen, _ = await asyncio.gather(page_through(), insert_while_paging())
    ids = [b.id for b in seen]
    assert ids == sorted(set(ids)), "a page repeated or reordered a book"
    assert {b.id for b in before} <= set(ids), "a book that existed all along was skipped"
    assert set(ids) <= {b.id for b in before + inserted}
    assert inserted, "nothing was inserted while paging"
