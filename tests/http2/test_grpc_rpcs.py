"""The official grpcio client calls every RPC over h2c and gets API.md's status codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from tests.http2.conftest import ADMIN, Member
from tests.http2.stubs import GrpcStubs
from tests.support.data import isbn10, isbn13

TIMEOUT = 10


Metadata = tuple[tuple[str, str], ...]


def code_of(method: Any, request: Any, metadata: Metadata = ()) -> grpc.StatusCode:
    """The status code a call failed with (a response stream is read to its end)."""

    def call() -> None:
        result = method(request, metadata=metadata, timeout=TIMEOUT)
        if isinstance(result, grpc.Call):
            list(result)

    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value
    code: grpc.StatusCode = error.code()
    return code


def test_get_book(library: Any, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]) -> None:
    pb = grpc_stubs.pb
    book = new_book(title="Dune")
    got = library.GetBook(pb.GetBookRequest(id=book.id), timeout=TIMEOUT).book
    assert (got.title, got.available) == ("Dune", True)
    assert got.create_time.seconds > 0
    missing = pb.GetBookRequest(id=10**12)
    assert code_of(library.GetBook, missing) == grpc.StatusCode.NOT_FOUND


def test_list_books_pages_and_rejects_bad_input(
    library: Any, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]
) -> None:
    pb = grpc_stubs.pb
    author = f"Pager {isbn13()}"
    ids = [new_book(author=author).id for _ in range(3)]
    first = library.ListBooks(pb.ListBooksRequest(page_size=2, query=author), timeout=TIMEOUT)
    assert [b.id for b in first.books] == ids[:2]
    assert first.total_size == 3
    second = library.ListBooks(
        pb.ListBooksRequest(page_size=2, query=author, page_token=first.next_page_token),
        timeout=TIMEOUT,
    )
    assert [b.id for b in second.books] == ids[2:]
    assert second.next_page_token == ""
    for bad in (pb.ListBooksRequest(page_size=-1), pb.ListBooksRequest(page_token="forged")):
        assert code_of(library.ListBooks, bad) == (grpc.StatusCode.INVALID_ARGUMENT)


def test_create_book_errors(
    library: Any, grpc_stubs: GrpcStubs, new_member: Callable[[], Member]
) -> None:
    pb = grpc_stubs.pb
    isbn = isbn10()
    request = pb.CreateBookRequest(title="T", author="A", isbn=isbn, published_year=1999)
    created = library.CreateBook(request, metadata=ADMIN, timeout=TIMEOUT).book
    assert created.isbn == isbn
    member = new_member()
    cases = {
        grpc.StatusCode.UNAUTHENTICATED: (request, ()),
        grpc.StatusCode.PERMISSION_DENIED: (request, member.metadata),
        grpc.StatusCode.ALREADY_EXISTS: (request, ADMIN),
        grpc.StatusCode.INVALID_ARGUMENT: (
            pb.CreateBookRequest(title="T", author="A", isbn="12345", published_year=1999),
            ADMIN,
        ),
    }
    for expected, (req, md) in cases.items():
        got = code_of(library.CreateBook, req, md)
        assert got == expected, f"expected {expected}, got {got}"


def test_members_and_who_am_i(
    library: Any, grpc_stubs: GrpcStubs, new_member: Callable[[], Member]
) -> None:
    pb = grpc_stubs.pb
    member = new_member()
    me = library.WhoAmI(pb.WhoAmIRequest(), metadata=member.metadata, timeout=TIMEOUT).member
    assert (me.id, me.role) == (member.id, pb.ROLE_MEMBER)
    assert code_of(library.WhoAmI, pb.WhoAmIRequest()) == (grpc.StatusCode.UNAUTHENTICATED)
    name = f"dup-{isbn13()}"
    library.CreateMember(pb.CreateMemberRequest(name=name), metadata=ADMIN, timeout=TIMEOUT)
    again = pb.CreateMemberRequest(name=name)
    assert code_of(library.CreateMember, again, ADMIN) == grpc.StatusCode.ALREADY_EXISTS
    assert (
        code_of(library.CreateMember, again, member.metadata) == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        code_of(library.CreateMember, pb.CreateMemberRequest(name=""), ADMIN)
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_loans_lifecycle(
    library: Any,
    grpc_stubs: GrpcStubs,
    new_book: Callable[..., Any],
    new_member: Callable[[], Member],
) -> None:
    pb = grpc_stubs.pb
    book = new_book()
    borrower, other = new_member(), new_member()

    def call(method: str, request: Any, md: Metadata) -> Any:
        return getattr(library, method)(request, metadata=md, timeout=TIMEOUT)

    out = call("CheckoutBook", pb.CheckoutBookRequest(id=book.id), borrower.metadata)
    assert (out.book.available, out.loan.member_id) == (False, borrower.id)
    assert not out.loan.HasField("return_time")
    code, theirs = grpc.StatusCode, other.metadata
    expectations: list[tuple[str, Any, Metadata, grpc.StatusCode]] = [
        ("CheckoutBook", pb.CheckoutBookRequest(id=book.id), theirs, code.FAILED_PRECONDITION),
        ("CheckoutBook", pb.CheckoutBookRequest(id=10**12), theirs, code.NOT_FOUND),
        ("ReturnBook", pb.ReturnBookRequest(id=book.id), theirs, code.PERMISSION_DENIED),
        ("DeleteBook", pb.DeleteBookRequest(id=book.id), ADMIN, code.FAILED_PRECONDITION),
        ("ListLoans", pb.ListLoansRequest(page_size=-1), borrower.metadata, code.INVALID_ARGUMENT),
        ("ListLoans", pb.ListLoansRequest(), (), code.UNAUTHENTICATED),
    ]  # fmt: skip
    for method, request, md, expected in expectations:
        got = code_of(getattr(library, method), request, md)
        assert got == expected, f"{method}: expected {expected}, got {got}"

    loans = call("ListLoans", pb.ListLoansRequest(active_only=True), borrower.metadata).loans
    assert [loan.book_id for loan in loans] == [book.id]
    assert call("ListLoans", pb.ListLoansRequest(), other.metadata).loans == []

    back = call("ReturnBook", pb.ReturnBookRequest(id=book.id), borrower.metadata)
    assert back.book.available
    assert back.loan.HasField("return_time")
    assert (
        code_of(library.ReturnBook, pb.ReturnBookRequest(id=book.id), borrower.metadata)
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert (
        code_of(library.ReturnBook, pb.ReturnBookRequest(id=10**12), borrower.metadata)
        == grpc.StatusCode.NOT_FOUND
    )

    call("DeleteBook", pb.DeleteBookRequest(id=book.id), ADMIN)
    assert (
        code_of(library.DeleteBook, pb.DeleteBookRequest(id=book.id), ADMIN)
        == grpc.StatusCode.NOT_FOUND
    )


def test_import_books_client_streaming(
    library: Any, grpc_stubs: GrpcStubs, new_member: Callable[[], Member]
) -> None:
    pb = grpc_stubs.pb
    good, duplicate = isbn13(), isbn13()
    library.CreateBook(
        pb.CreateBookRequest(title="Old", author="A", isbn=duplicate, published_year=1990),
        metadata=ADMIN,
        timeout=TIMEOUT,
    )
    items = [
        pb.ImportBooksRequest(title="New", author="A", isbn=good, published_year=2000),
        pb.ImportBooksRequest(title="Bad", author="A", isbn="not-an-isbn", published_year=2000),
        pb.ImportBooksRequest(title="Dup", author="A", isbn=duplicate, published_year=2000),
    ]
    result = library.ImportBooks(iter(items), metadata=ADMIN, timeout=TIMEOUT)
    assert result.created_count == 1
    assert [(f.index, f.isbn) for f in result.failures] == [(1, "not-an-isbn"), (2, duplicate)]
    assert all(f.reason for f in result.failures)
    member = new_member()
    assert (
        code_of(library.ImportBooks, iter(items), member.metadata)
        == grpc.StatusCode.PERMISSION_DENIED
    )


def test_watch_books_snapshot_and_out_of_range(
    library: Any, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]
) -> None:
    pb = grpc_stubs.pb
    book = new_book()
    stream = library.WatchBooks(pb.WatchBooksRequest(since_revision=0), timeout=TIMEOUT)
    try:
        for response in stream:
            assert response.event.type == pb.EVENT_TYPE_CREATED
            if response.event.book.id == book.id:
                break
    finally:
        stream.cancel()
    ahead = pb.WatchBooksRequest(since_revision=10**12)
    assert code_of(library.WatchBooks, ahead) == (grpc.StatusCode.OUT_OF_RANGE)


def test_search_books_bidi(
    library: Any, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]
) -> None:
    pb = grpc_stubs.pb
    word = f"Needle{isbn13()}"
    new_book(title=f"The {word}")
    queries = [pb.SearchBooksRequest(query=word.lower()), pb.SearchBooksRequest(query="zz-none-zz")]
    answers = list(library.SearchBooks(iter(queries), timeout=TIMEOUT))
    assert [a.query for a in answers] == [word.lower(), "zz-none-zz"]
    assert [b.title for b in answers[0].books] == [f"The {word}"]
    assert list(answers[1].books) == []
