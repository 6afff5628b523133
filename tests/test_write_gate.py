"""Reads ahead of writes: a bounded number of writes run per process, a bounded number wait.

Every write is held back from the outside (the database's write lock on SQLite,
the event-head row on PostgreSQL), so calls stay in progress or waiting for as
long as the test needs, with no timing involved.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_connect
from server.gen.library.v1 import library_pb as pb
from server.rpc.write_gate import writes_of
from tests.support.clients import (
    CONNECT_PROTO,
    GRPC_WEB,
    LIBRARIAN,
    Wire,
    add_book,
    book_request,
    get_book,
    present,
    unique,
)
from tests.support.held_writes import writes_held
from tests.support.server import ServerFactory, ServerProcess
from tests.support.waiting import DEADLINE_SECONDS

pytestmark = pytest.mark.anyio

IN_PROGRESS = 2
WAITING = 3


def gated(servers: ServerFactory, in_progress: int, waiting: int) -> ServerProcess:
    """A server that lets ``in_progress`` writes in at once and parks ``waiting`` more."""
    return servers.start(
        ServerProcess,
        env={
            "LIBRARY_MAX_WRITES_IN_PROGRESS": str(in_progress),
            "LIBRARY_MAX_WAITING_WRITES": str(waiting),
        },
    )


async def first_done(calls: list[asyncio.Task[pb.CreateBookResponse]]) -> asyncio.Task[object]:
    """The first of ``calls`` to end."""
    async with asyncio.timeout(DEADLINE_SECONDS):
        done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    return done.pop()


def test_the_writes_are_the_methods_with_side_effects_that_end() -> None:
    # From the proto: everything not NO_SIDE_EFFECTS, except the calls that stream answers.
    assert writes_of(library_connect.LibraryService.desc()) == {
        "CreateBook",
        "DeleteBook",
        "CheckoutBook",
        "ReturnBook",
        "CreateMember",
        "ImportBooks",
    }


@pytest.mark.parametrize("wire", [CONNECT_PROTO, GRPC_WEB], ids=lambda w: w.name)
async def test_past_the_bound_a_write_is_refused_and_reads_go_on(
    servers: ServerFactory, wire: Wire
) -> None:
    server = gated(servers, IN_PROGRESS, WAITING)
    client = wire.client(server.url)
    tag = unique()
    shelved = await add_book(client, "shelved")
    async with writes_held(server.database_url):
        # One more than may be in progress and waiting: exactly one is refused,
        # whichever arrives last, since none of the others can finish.
        requests = [book_request(f"{tag} {i}") for i in range(IN_PROGRESS + WAITING + 1)]
        calls = [asyncio.create_task(client.create_book(r, headers=LIBRARIAN)) for r in requests]
        refused = await first_done(calls)
        error = refused.exception()
        assert isinstance(error, ConnectError)
        assert error.code is Code.UNAVAILABLE
        assert "LIBRARY_MAX_WAITING_WRITES" in error.message
        # Reads never wait at the gate: they are answered while every write is held.
        assert (await get_book(client, shelved.id)).title == shelved.title
        listed = await client.list_books(pb.ListBooksRequest(query="shelved"))
        assert shelved.id in [b.id for b in listed.books]
        assert all(not c.done() for c in calls if c is not refused)
    created = [present((await c).book).title for c in calls if c is not refused]
    assert len(created) == IN_PROGRESS + WAITING
    # The refused write wrote nothing: only the others' books exist.
    found = await client.list_books(pb.ListBooksRequest(query=tag, page_size=50))
    assert sorted(b.title for b in found.books) == sorted(created)
    never = requests[calls.index(refused)].title  # type: ignore[arg-type]
    assert never not in created


async def test_below_the_bound_every_write_waits_its_turn_and_succeeds(
    servers: ServerFactory,
) -> None:
    server = gated(servers, 1, 40)
    client = CONNECT_PROTO.client(server.url)
    tag = unique()
    async with writes_held(server.database_url):
        calls = [
            asyncio.create_task(client.create_book(book_request(f"{tag} {i}"), headers=LIBRARIAN))
            for i in range(40)
        ]
        # Still held: a read is answered ahead of all forty.
        await client.list_books(pb.ListBooksRequest(query=tag))
        assert not any(c.done() for c in calls)
    books = [present((await c).book) for c in calls]
    found = await client.list_books(pb.ListBooksRequest(query=tag, page_size=50))
    assert sorted(b.id for b in found.books) == sorted(b.id for b in books)


def post_garbage(url: str) -> str:
    """A CreateBook whose body is not protobuf, with no token; the Connect code it gets."""
    request = urllib.request.Request(
        f"{url}/library.v1.LibraryService/CreateBook",
        data=b"\xff\xff\xff\xff",
        headers={"content-type": "application/proto"},
    )
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE_SECONDS):
            return "ok"
    except urllib.error.HTTPError as e:
        return str(json.load(e)["code"])


async def test_a_write_is_refused_before_its_body_is_read_with_telemetry_on(
    servers: ServerFactory,
) -> None:
    # Telemetry adds a message interceptor; the gate must still run before the body is read.
    server = servers.start(
        ServerProcess,
        env={
            "LIBRARY_MAX_WRITES_IN_PROGRESS": "1",
            "LIBRARY_MAX_WAITING_WRITES": "0",
            "LIBRARY_METRICS_PORT": "0",
        },
    )
    client = CONNECT_PROTO.client(server.url)
    async with writes_held(server.database_url):
        held = asyncio.create_task(client.create_book(book_request(), headers=LIBRARIAN))
        # Until the held write has its turn, the garbage gets one and fails on its own
        # (no token); once it has, only a gate that runs before the body refuses it.
        codes: list[str] = []
        async with asyncio.timeout(DEADLINE_SECONDS):
            while not codes or codes[-1] != "unavailable":
                codes.append(await asyncio.to_thread(post_garbage, server.url))
        assert set(codes) <= {"unauthenticated", "unavailable"}
        assert not held.done()
    present((await held).book)
