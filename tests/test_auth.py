"""Who may call what: every RPC as nobody, a member and a librarian; members and WhoAmI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryService, LibraryServiceClient
from server.rpc.auth import POLICY as SERVER_POLICY
from tests.support.clients import (
    CONNECT_JSON,
    CONNECT_PROTO,
    LIBRARIAN,
    WIRES,
    add_book,
    add_member,
    bearer,
    book_request,
    present,
    stream_of,
    take,
    unique,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

Headers = dict[str, str]
# Calls one RPC as the caller with these headers, so that it succeeds when the
# caller is allowed; any books or loans it needs are set up first.
Call = Callable[[LibraryServiceClient, Headers], Awaitable[object]]


async def _get_book(c: LibraryServiceClient, h: Headers) -> object:
    return await c.get_book(pb.GetBookRequest(id=(await add_book(c)).id), headers=h)


async def _list_books(c: LibraryServiceClient, h: Headers) -> object:
    return await c.list_books(pb.ListBooksRequest(page_size=1), headers=h)


async def _create_book(c: LibraryServiceClient, h: Headers) -> object:
    return await c.create_book(book_request(), headers=h)


async def _delete_book(c: LibraryServiceClient, h: Headers) -> object:
    return await c.delete_book(pb.DeleteBookRequest(id=(await add_book(c)).id), headers=h)


async def _checkout_book(c: LibraryServiceClient, h: Headers) -> object:
    return await c.checkout_book(pb.CheckoutBookRequest(id=(await add_book(c)).id), headers=h)


async def _return_book(c: LibraryServiceClient, h: Headers) -> object:
    book = await add_book(c)
    # A member may only return their own loan, so the caller borrows it first
    # when it can; otherwise a librarian does, to see the return refused.
    try:
        await c.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=h)
    except ConnectError:
        await c.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=LIBRARIAN)
    return await c.return_book(pb.ReturnBookRequest(id=book.id), headers=h)


async def _list_loans(c: LibraryServiceClient, h: Headers) -> object:
    return await c.list_loans(pb.ListLoansRequest(), headers=h)


async def _create_member(c: LibraryServiceClient, h: Headers) -> object:
    return await c.create_member(pb.CreateMemberRequest(name=unique("m-")), headers=h)


async def _who_am_i(c: LibraryServiceClient, h: Headers) -> object:
    return await c.who_am_i(pb.WhoAmIRequest(), headers=h)


async def _watch_books(c: LibraryServiceClient, h: Headers) -> object:
    await add_book(c)
    return await take(c.watch_books(pb.WatchBooksRequest(), headers=h), 1)


async def _import_books(c: LibraryServiceClient, h: Headers) -> object:
    return await c.import_books(stream_of([pb.ImportBooksRequest()]), headers=h)


async def _search_books(c: LibraryServiceClient, h: Headers) -> object:
    return await take(c.search_books(stream_of([pb.SearchBooksRequest()]), headers=h), 1)


ANYONE, SIGNED_IN, LIBRARIAN_ONLY = "anyone", "signed in", "librarian"
# API.md's "who may call" column.
POLICY: dict[str, tuple[Call, str]] = {
    "GetBook": (_get_book, ANYONE),
    "ListBooks": (_list_books, ANYONE),
    "CreateBook": (_create_book, LIBRARIAN_ONLY),
    "DeleteBook": (_delete_book, LIBRARIAN_ONLY),
    "CheckoutBook": (_checkout_book, SIGNED_IN),
    "ReturnBook": (_return_book, SIGNED_IN),
    "ListLoans": (_list_loans, SIGNED_IN),
    "CreateMember": (_create_member, LIBRARIAN_ONLY),
    "WhoAmI": (_who_am_i, SIGNED_IN),
    "WatchBooks": (_watch_books, ANYONE),
    "ImportBooks": (_import_books, LIBRARIAN_ONLY),
    "SearchBooks": (_search_books, ANYONE),
}
# What each kind of caller gets, by the method's access rule; None is success.
OUTCOME: dict[tuple[str, str], Code | None] = {
    (ANYONE, "nobody"): None,
    (ANYONE, "member"): None,
    (ANYONE, "librarian"): None,
    (SIGNED_IN, "nobody"): Code.UNAUTHENTICATED,
    (SIGNED_IN, "member"): None,
    (SIGNED_IN, "librarian"): None,
    (LIBRARIAN_ONLY, "nobody"): Code.UNAUTHENTICATED,
    (LIBRARIAN_ONLY, "member"): Code.PERMISSION_DENIED,
    (LIBRARIAN_ONLY, "librarian"): None,
}


def test_every_rpc_is_in_the_matrix() -> None:
    assert {m.name for m in LibraryService.desc().methods} == POLICY.keys()
    # The server's policy, read from the proto's access option, agrees with API.md.
    assert {m: access.value for m, access in SERVER_POLICY.items()} == {
        m: access for m, (_, access) in POLICY.items()
    }


CALLERS = ("nobody", "member", "librarian")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method", sorted(POLICY))
async def test_access_matrix(server: ServerProcess, method: str, caller: str) -> None:
    call, access = POLICY[method]
    # Spread the matrix over the wire protocols so each carries auth errors.
    wire = WIRES[(sorted(POLICY).index(method) + CALLERS.index(caller)) % len(WIRES)]
    async with wire.client(server.url) as client:
        if caller == "member":
            _, headers = await add_member(client)
        else:
            headers = LIBRARIAN if caller == "librarian" else {}
        expected = OUTCOME[access, caller]
        if expected is None:
            await call(client, headers)
            return
        with pytest.raises(ConnectError) as refused:
            await call(client, headers)
    assert refused.value.code is expected


@pytest.mark.parametrize(
    "authorization",
    ["Bearer lib_no-such-token", "Bearer ", "Basic YWRtaW46YWRtaW4=", "lib_no-scheme"],
)
@pytest.mark.parametrize(
    "method", sorted(m for m, (_, access) in POLICY.items() if access != ANYONE)
)
async def test_unknown_or_malformed_token_is_unauthenticated(
    server: ServerProcess, method: str, authorization: str
) -> None:
    call, _ = POLICY[method]
    async with CONNECT_PROTO.client(server.url) as client:
        with pytest.raises(ConnectError) as refused:
            await call(client, {"authorization": authorization})
    assert refused.value.code is Code.UNAUTHENTICATED
    # A token nobody holds is told apart from a call that sent none.
    if authorization == "Bearer lib_no-such-token":
        assert "the token was not recognised" in refused.value.message
    else:
        assert "this call needs a token" in refused.value.message


async def test_create_member_roles_and_who_am_i(server: ServerProcess) -> None:
    async with CONNECT_JSON.client(server.url) as client:
        plain = await client.create_member(
            pb.CreateMemberRequest(name=unique("plain-")), headers=LIBRARIAN
        )
        staff = await client.create_member(
            pb.CreateMemberRequest(name=unique("staff-"), role=pb.Role.LIBRARIAN), headers=LIBRARIAN
        )
        plain_me = await client.who_am_i(
            pb.WhoAmIRequest(), headers=bearer(plain.token), use_get=True
        )
        staff_me = await client.who_am_i(pb.WhoAmIRequest(), headers=bearer(staff.token))
        # The new librarian's token carries the librarian role.
        made_by_staff = await add_member(client)
        await client.create_member(
            pb.CreateMemberRequest(name=unique()), headers=bearer(staff.token)
        )
        admin = await client.who_am_i(pb.WhoAmIRequest(), headers=LIBRARIAN)
    assert present(plain.member).role == pb.Role.MEMBER
    assert present(staff.member).role == pb.Role.LIBRARIAN
    assert plain.token != staff.token
    assert plain.token.startswith("lib_")
    assert len(plain.token) >= 40
    assert plain_me.member == plain.member
    assert staff_me.member == staff.member
    assert made_by_staff[0].role == pb.Role.MEMBER
    assert present(admin.member).role == pb.Role.LIBRARIAN


@pytest.mark.parametrize("name", ["", "   ", "n" * 201, "nul\x00name"])
async def test_create_member_rejects_bad_names(server: ServerProcess, name: str) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        with pytest.raises(ConnectError) as refused:
            await client.create_member(pb.CreateMemberRequest(name=name), headers=LIBRARIAN)
    assert refused.value.code is Code.INVALID_ARGUMENT


async def test_same_member_name_already_exists(server: ServerProcess) -> None:
    name = unique("twin-")
    async with CONNECT_PROTO.client(server.url) as client:
        await add_member(client, name=name)
        with pytest.raises(ConnectError) as twin:
            await add_member(client, name=name)
        with pytest.raises(ConnectError) as twin_librarian:
            await add_member(client, role=pb.Role.LIBRARIAN, name=name)
    assert twin.value.code is Code.ALREADY_EXISTS
    assert name in twin.value.message
    assert twin_librarian.value.code is Code.ALREADY_EXISTS


async def test_unknown_role_is_invalid_argument(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        with pytest.raises(ConnectError) as refused:
            await client.create_member(
                pb.CreateMemberRequest(name=unique(), role=pb.Role(7)), headers=LIBRARIAN
            )
    assert refused.value.code is Code.INVALID_ARGUMENT
