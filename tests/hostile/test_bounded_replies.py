"""Replies and error messages stay small whatever the client sends."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.hostile.conftest import Start
from tests.hostile.raw import SERVICE, Target, envelope, send
from tests.http2.stubs import GrpcStubs
from tests.support.clients import CONNECT_JSON, CONNECT_PROTO, GRPC_WEB, LIBRARIAN, Wire
from tests.support.data import isbn13

HUGE = "9" * 1_000_000
LISTED = 100  # LIBRARY_MAX_IMPORT_FAILURES in tests/hostile/conftest.py


def _items(bad: int) -> Iterator[pb.ImportBooksRequest]:
    yield pb.ImportBooksRequest(title="Good", author="A", isbn=isbn13(), published_year=2001)
    for i in range(bad):
        isbn = HUGE if i % 100 == 0 else f"not-an-isbn-{i}"
        yield pb.ImportBooksRequest(title="Bad", author="A", isbn=isbn)


@pytest.mark.parametrize("wire", [CONNECT_PROTO, GRPC_WEB], ids=lambda w: w.name)
def test_import_reply_lists_the_first_failures_and_counts_all(target: Target, wire: Wire) -> None:
    with wire.sync_client(target.url) as client:
        reply = client.import_books(_items(1_000), headers=LIBRARIAN, timeout_ms=60_000)
    assert reply.created_count == 1
    assert reply.failed_count == 1_000
    assert len(reply.failures) == LISTED
    assert [f.index for f in reply.failures] == list(range(1, LISTED + 1))
    assert all(len(f.isbn) <= 40 and len(f.reason) < 300 for f in reply.failures)
    assert reply.failures[0].isbn == HUGE[:40]
    assert len(reply.to_binary()) < 64 * 1024


@pytest.mark.parametrize("wire", [CONNECT_JSON, CONNECT_PROTO, GRPC_WEB], ids=lambda w: w.name)
def test_error_messages_quote_a_short_excerpt(target: Target, wire: Wire) -> None:
    request = pb.CreateBookRequest(title="T", author="A", isbn=HUGE, published_year=2001)
    with wire.sync_client(target.url) as client, pytest.raises(ConnectError) as raised:
        client.create_book(request, headers=LIBRARIAN)
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert "1000000 characters" in raised.value.message
    assert len(raised.value.message.encode()) < 1024


def test_grpc_clients_get_invalid_argument_not_resource_exhausted(
    start_target: Start, grpc_stubs: GrpcStubs
) -> None:
    http2 = start_target("http2")
    request = grpc_stubs.pb.CreateBookRequest(title="T", author="A", isbn=HUGE, published_year=1)
    with grpc.insecure_channel(f"{http2.host}:{http2.port}") as channel:
        stub = grpc_stubs.library(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateBook(request, metadata=(("authorization", LIBRARIAN["authorization"]),))
    error: grpc.Call = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details().encode()) < 1024


LONG = "x" * 4000


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"content-type": "application/json", "content-encoding": LONG}, ""),
        ({"content-type": "application/json", "connect-protocol-version": LONG}, ""),
        ({"content-type": "application/json", "connect-timeout-ms": "9" * 4000}, ""),
        ({"content-type": "application/grpc-web+json", "grpc-timeout": LONG}, ""),
        ({"content-type": "application/grpc-web+json", "grpc-encoding": LONG}, ""),
        ({}, f"?encoding=json&compression={LONG}&message=%7B%7D"),
    ],
    ids=[
        "content-encoding",
        "protocol-version",
        "timeout-ms",
        "grpc-timeout",
        "grpc-encoding",
        "get",
    ],
)
def test_errors_about_headers_quote_them_briefly(
    target: Target, headers: dict[str, str], query: str
) -> None:
    body = None if query else (b'{"id": 1}' if "grpc" not in str(headers) else envelope(b"{}"))
    reply = send(target, f"{SERVICE}/GetBook{query}", body, headers, "GET" if query else "POST")
    # An error (Connect: in the body; gRPC-Web: in grpc-message, a header or
    # the trailer frame) that quotes at most a short excerpt of the header.
    assert reply.status != 500, reply
    assert reply.status >= 400 or "grpc-status" in reply.headers or b"grpc-status" in reply.body
    assert len(reply.body) < 1024, reply
    assert all(len(value) < 1024 for value in reply.headers.values()), reply
