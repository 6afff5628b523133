"""GetBook, CreateBook and DeleteBook over every wire protocol, with their errors."""

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
    add_member,
    book_request,
    get_book,
    over_all_wires,
    present,
    unique,
    when,
)
from tests.support.data import isbn10, isbn13
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio


def hyphenate(isbn: str) -> str:
    """An ISBN-13 written the way printed books show it."""
    return f"{isbn[:3]}-{isbn[3]}-{isbn[4:7]}-{isbn[7:12]}-{isbn[12]}"


@over_all_wires
async def test_create_get_delete(server: ServerProcess, wire: Wire) -> None:
    isbn = isbn13()
    async with wire.client(server.url) as client:
        created = await add_book(
            client, title="  Dune ", author="Frank Herbert", isbn=hyphenate(isbn)
        )
        got = (await client.get_book(pb.GetBookRequest(id=created.id), use_get=wire.can_get)).book
        await client.delete_book(pb.DeleteBookRequest(id=created.id), headers=LIBRARIAN)
        with pytest.raises(ConnectError) as gone:
            await client.get_book(pb.GetBookRequest(id=created.id))
        with pytest.raises(ConnectError) as deleted_twice:
            await client.delete_book(pb.DeleteBookRequest(id=created.id), headers=LIBRARIAN)
    assert created.id > 0
    assert (created.title, created.author, created.isbn) == ("Dune", "Frank Herbert", isbn)
    assert created.published_year == 2001
    assert created.available
    assert when(created.create_time) == when(created.update_time)
    assert got == created
    assert gone.value.code is Code.NOT_FOUND
    assert str(created.id) in gone.value.message
    assert deleted_twice.value.code is Code.NOT_FOUND


def test_sync_client_round_trip(server: ServerProcess) -> None:
    with CONNECT_PROTO.sync_client(server.url) as client:
        created = present(client.create_book(book_request(isbn=isbn10()), headers=LIBRARIAN).book)
        assert client.get_book(pb.GetBookRequest(id=created.id), use_get=True).book == created
        with pytest.raises(ConnectError) as missing:
            client.get_book(pb.GetBookRequest(id=created.id + 10**9))
    assert missing.value.code is Code.NOT_FOUND


async def test_isbn10_with_x_check_digit_is_stored_upper_case(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        isbn = next(i for i in iter(isbn10, "") if i.endswith("X"))
        book = await add_book(client, isbn=f"{isbn[:1]} {isbn[1:4]} {isbn[4:9]} x")
    assert book.isbn == isbn


@over_all_wires
@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"author": ""}, "author"),
        ({"isbn": ""}, "isbn"),
        ({"isbn": "9780306406158"}, "check digit"),
        ({"isbn": "0306406153"}, "check digit"),
        ({"isbn": "978030640615"}, "ISBN-10 or ISBN-13"),
        ({"isbn": "97803064061577"}, "ISBN-10 or ISBN-13"),
        ({"isbn": "978-0-306-4061A-7"}, "ISBN-10 or ISBN-13"),
        ({"isbn": "978030640615\uff17"}, "ISBN-10 or ISBN-13"),
        ({"published_year": 99999}, "published_year"),
        ({"title": "x" * 501}, "limited"),
        ({"title": "Nul\x00Title"}, "control characters"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_create_book_rejects_bad_input(
    server: ServerProcess, wire: Wire, fields: dict[str, object], complaint: str
) -> None:
    async with wire.client(server.url) as client:
        with pytest.raises(ConnectError) as refused:
            await client.create_book(book_request(**fields), headers=LIBRARIAN)
    assert refused.value.code is Code.INVALID_ARGUMENT
    assert complaint in refused.value.message


@over_all_wires
async def test_same_isbn_twice_already_exists(server: ServerProcess, wire: Wire) -> None:
    isbn = isbn13()
    async with wire.client(server.url) as client:
        await add_book(client, isbn=isbn)
        with pytest.raises(ConnectError) as same:
            await add_book(client, isbn=isbn)
        with pytest.raises(ConnectError) as hyphenated:
            await add_book(client, isbn=hyphenate(isbn))
    assert same.value.code is Code.ALREADY_EXISTS
    assert isbn in same.value.message
    assert hyphenated.value.code is Code.ALREADY_EXISTS


async def test_hyphenated_then_normalized_isbn_already_exists(server: ServerProcess) -> None:
    isbn = isbn13()
    async with CONNECT_PROTO.client(server.url) as client:
        await add_book(client, isbn=hyphenate(isbn))
        with pytest.raises(ConnectError) as again:
            await add_book(client, isbn=isbn)
    assert again.value.code is Code.ALREADY_EXISTS


@over_all_wires
async def test_delete_on_loan_is_failed_precondition(server: ServerProcess, wire: Wire) -> None:
    async with wire.client(server.url) as client:
        book = await add_book(client)
        _, member = await add_member(client)
        await client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=member)
        with pytest.raises(ConnectError) as on_loan:
            await client.delete_book(pb.DeleteBookRequest(id=book.id), headers=LIBRARIAN)
        still_there = await get_book(client, book.id)
        await client.return_book(pb.ReturnBookRequest(id=book.id), headers=member)
        await client.delete_book(pb.DeleteBookRequest(id=book.id), headers=LIBRARIAN)
    assert on_loan.value.code is Code.FAILED_PRECONDITION
    assert "on loan" in on_loan.value.message
    assert not still_there.available


@pytest.mark.parametrize("book_id", [0, -1, 2**63 - 1])
async def test_get_book_with_odd_ids_is_not_found(server: ServerProcess, book_id: int) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        with pytest.raises(ConnectError) as missing:
            await client.get_book(pb.GetBookRequest(id=book_id))
    assert missing.value.code is Code.NOT_FOUND


async def test_listing_finds_by_title_author_and_isbn(server: ServerProcess) -> None:
    tag = unique()
    async with CONNECT_PROTO.client(server.url) as client:
        by_title = await add_book(client, tag)
        by_author = await add_book(client, author=f"Jo {tag.upper()}")
        isbn = isbn13()
        by_isbn = await add_book(client, isbn=isbn)
        tagged = await client.list_books(pb.ListBooksRequest(query=tag.upper()))
        hyphenated = await client.list_books(pb.ListBooksRequest(query=hyphenate(isbn)))
    assert [b.id for b in tagged.books] == [by_title.id, by_author.id]
    assert tagged.total_size == 2
    assert [b.id for b in hyphenated.books] == [by_isbn.id]
