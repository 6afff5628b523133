"""Reads ahead of writes: a bounded number of writes run per process, a bounded number wait.

Every write is held back from the outside (the database's write lock on SQLite,
the event-head row on PostgreSQL), so calls stay in progress or waiting for as
long as the test needs, with no timing involved.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

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


def test_auth_runs_before_the_body_with_telemetry_on(servers: ServerFactory) -> None:
    # Telemetry adds a message interceptor, which ends connectrpc's run of the leading
    # ones: auth (and the gate's turns) must still come before the body is read.
    server = servers.start(ServerProcess, env={"LIBRARY_METRICS_PORT": "0"})
    assert post_garbage(server.url) == "unauthenticated"


@contextmanager
def trickling_write(url: str) -> Iterator[socket.socket]:
    """A signed-in CreateBook whose body never finishes arriving."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    body = book_request().to_binary()
    head = (
        "POST /library.v1.LibraryService/CreateBook HTTP/1.1\r\n"
        f"host: {host}:{port}\r\ncontent-type: application/proto\r\n"
        f"authorization: {LIBRARIAN['authorization']}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head.encode() + body[:4])
        yield sock


async def test_a_trickled_body_holds_no_place(servers: ServerFactory) -> None:
    # A write takes its place once its body is in: a client trickling its body
    # cannot keep other writes out.
    server = gated(servers, 1, 5)
    client = CONNECT_PROTO.client(server.url)
    with trickling_write(server.url):
        # Served after the trickler's headers arrived, so its turn has come and gone.
        await client.list_books(pb.ListBooksRequest())
        async with asyncio.timeout(DEADLINE_SECONDS):
            made = await client.create_book(book_request(), headers=LIBRARIAN)
        present(made.book)
