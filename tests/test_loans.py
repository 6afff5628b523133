"""CheckoutBook, ReturnBook and ListLoans: who may, what they see, and exactly-once checkout."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.support.clients import (
    CONNECT_JSON,
    CONNECT_PROTO,
    GRPC_WEB,
    LIBRARIAN,
    Wire,
    add_book,
    add_member,
    checkout,
    get_book,
    give_back,
    over_all_wires,
    present,
    when,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

CONCURRENT_CHECKOUTS = 50


@over_all_wires
async def test_checkout_then_return(server: ServerProcess, wire: Wire) -> None:
    async with wire.client(server.url) as client:
        book = await add_book(client)
        member, headers = await add_member(client)
        lent, loan = await checkout(client, book.id, headers)
        while_lent = await get_book(client, book.id)
        returned, closed = await give_back(client, book.id, headers)
        after = await get_book(client, book.id)
    # Each answer is the book as stored, its new update_time included.
    assert (lent, returned) == (while_lent, after)
    assert when(book.update_time) < when(lent.update_time) <= when(returned.update_time)
    assert not lent.available
    assert (loan.book_id, loan.member_id) == (book.id, member.id)
    assert not loan.has_field("return_time")
    assert when(loan.due_time) - when(loan.checkout_time) == timedelta(days=14)
    assert returned.available
    assert closed.id == loan.id
    assert when(closed.return_time) >= when(loan.checkout_time)
    assert after.available


async def test_get_book_follows_every_loan(server: ServerProcess) -> None:
    # Read twice between changes: the second read of an unchanged book is answered
    # from memory (the cached book and the response built for it), and must still
    # show each change as soon as its write was answered.
    async with CONNECT_PROTO.client(server.url) as client:
        book = await add_book(client)
        _, headers = await add_member(client)
        seen = []
        for change in (checkout, give_back, checkout, give_back):
            seen += [(await get_book(client, book.id)).available for _ in range(2)]
            await change(client, book.id, headers)
        seen += [(await get_book(client, book.id)).available for _ in range(2)]
    assert seen == [True, True, False, False, True, True, False, False, True, True]


@over_all_wires
async def test_loan_errors(server: ServerProcess, wire: Wire) -> None:
    async with wire.client(server.url) as client:
        book = await add_book(client)
        _, alice = await add_member(client)
        _, bob = await add_member(client)
        with pytest.raises(ConnectError) as not_on_loan:
            await client.return_book(pb.ReturnBookRequest(id=book.id), headers=alice)
        await client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=alice)
        with pytest.raises(ConnectError) as unavailable:
            await client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=bob)
        with pytest.raises(ConnectError) as not_yours:
            await client.return_book(pb.ReturnBookRequest(id=book.id), headers=bob)
        with pytest.raises(ConnectError) as no_book_out:
            await client.checkout_book(pb.CheckoutBookRequest(id=book.id + 10**9), headers=bob)
        with pytest.raises(ConnectError) as no_book_back:
            await client.return_book(pb.ReturnBookRequest(id=book.id + 10**9), headers=bob)
        still_out = await get_book(client, book.id)
    assert not_on_loan.value.code is Code.FAILED_PRECONDITION
    assert unavailable.value.code is Code.FAILED_PRECONDITION
    assert not_yours.value.code is Code.PERMISSION_DENIED
    assert no_book_out.value.code is Code.NOT_FOUND
    assert no_book_back.value.code is Code.NOT_FOUND
    assert not still_out.available


async def test_librarian_may_return_anyones_loan(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        book = await add_book(client)
        member, headers = await add_member(client)
        await checkout(client, book.id, headers)
        returned, loan = await give_back(client, book.id, LIBRARIAN)
    assert returned.available
    assert loan.member_id == member.id


async def test_members_see_only_their_loans_and_librarians_see_all(server: ServerProcess) -> None:
    async with CONNECT_JSON.client(server.url) as client:
        _, alice = await add_member(client)
        _, bob = await add_member(client)
        first, second, third = [await add_book(client) for _ in range(3)]
        _, a1 = await checkout(client, first.id, alice)
        _, a2 = await checkout(client, second.id, alice)
        _, b1 = await checkout(client, third.id, bob)
        await client.return_book(pb.ReturnBookRequest(id=first.id), headers=alice)
        alices = await client.list_loans(pb.ListLoansRequest(), headers=alice)
        alices_open = await client.list_loans(pb.ListLoansRequest(active_only=True), headers=alice)
        bobs = await client.list_loans(pb.ListLoansRequest(), headers=bob, use_get=True)
        everyone = await all_loans(client, LIBRARIAN)
    assert [loan.id for loan in alices.loans] == [a1.id, a2.id]
    assert alices.loans[0].has_field("return_time")
    assert [loan.id for loan in alices_open.loans] == [a2.id]
    assert [loan.id for loan in bobs.loans] == [b1.id]
    assert {a1.id, a2.id, b1.id} <= {loan.id for loan in everyone}


async def test_list_loans_pages_and_refuses_bad_paging(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        _, member = await add_member(client)
        books = [await add_book(client) for _ in range(5)]
        for book in books:
            await client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=member)
        first = await client.list_loans(pb.ListLoansRequest(page_size=2), headers=member)
        pages = await all_loans(client, member, page_size=2)
        with pytest.raises(ConnectError) as negative:
            await client.list_loans(pb.ListLoansRequest(page_size=-1), headers=member)
        with pytest.raises(ConnectError) as forged:
            await client.list_loans(pb.ListLoansRequest(page_token="forged"), headers=member)
        with pytest.raises(ConnectError) as other_filter:
            await client.list_loans(
                pb.ListLoansRequest(
                    page_size=2, page_token=first.next_page_token, active_only=True
                ),
                headers=member,
            )
        with pytest.raises(ConnectError) as other_caller:
            await client.list_loans(
                pb.ListLoansRequest(page_size=2, page_token=first.next_page_token),
                headers=LIBRARIAN,
            )
    assert len(first.loans) == 2
    assert first.next_page_token
    assert [loan.book_id for loan in pages] == [b.id for b in books]
    for error in (negative, forged, other_filter, other_caller):
        assert error.value.code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize("wire", [CONNECT_PROTO, GRPC_WEB], ids=lambda w: w.name)
async def test_concurrent_checkouts_of_one_book_exactly_one_wins(
    server: ServerProcess, wire: Wire
) -> None:
    async with wire.client(server.url) as client:
        book = await add_book(client)
        members = await asyncio.gather(*(add_member(client) for _ in range(CONCURRENT_CHECKOUTS)))
        results = await asyncio.gather(
            *(
                client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=headers)
                for _, headers in members
            ),
            return_exceptions=True,
        )
        loans = await client.list_loans(pb.ListLoansRequest(active_only=True), headers=LIBRARIAN)
    wins = [r for r in results if isinstance(r, pb.CheckoutBookResponse)]
    losses = [r for r in results if isinstance(r, ConnectError)]
    assert len(wins) == 1
    assert len(losses) == CONCURRENT_CHECKOUTS - 1
    assert {e.code for e in losses} == {Code.FAILED_PRECONDITION}
    assert [loan.id for loan in loans.loans if loan.book_id == book.id] == [
        present(wins[0].loan).id
    ]


async def all_loans(
    client: LibraryServiceClient, headers: dict[str, str], page_size: int = 0
) -> list[pb.Loan]:
    """Every loan the caller may see, following next_page_token to the end."""
    loans: list[pb.Loan] = []
    token = ""
    while True:
        page = await client.list_loans(
            pb.ListLoansRequest(page_size=page_size, page_token=token), headers=headers
        )
        loans.extend(page.loans)
        token = page.next_page_token
        if not token:
            return loans
