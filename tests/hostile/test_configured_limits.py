"""The limits that are settings take effect at the values they are set to, on both transports."""

from __future__ import annotations

import time

import pytest
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.hostile.conftest import Start
from tests.hostile.raw import (
    JSON,
    NO_SUCH_BOOK,
    SERVICE,
    connect,
    get_book_answers,
    read_until_closed,
    send,
)
from tests.support.clients import CONNECT_JSON, LIBRARIAN

MESSAGE = 120
EXCERPT = 10
SMALL_ERRORS = {"LIBRARY_MAX_ERROR_MESSAGE": str(MESSAGE), "LIBRARY_ERROR_EXCERPT": str(EXCERPT)}
CUT_MARK = "… (cut)"
BODY_TIMEOUT = 1.0
SLOW_BODIES = {
    "LIBRARY_BODY_TIMEOUT": str(BODY_TIMEOUT),
    "LIBRARY_STREAM_IDLE_TIMEOUT": str(int(BODY_TIMEOUT)),
}


@pytest.mark.parametrize("transport", ["http1", "http2"])
def test_smaller_error_bounds_cut_messages_and_excerpts_there(
    start_target: Start, transport: str
) -> None:
    target = start_target(transport, SMALL_ERRORS)
    isbn = "9" * 100_000
    request = pb.CreateBookRequest(title="T", author="A", isbn=isbn, published_year=2001)
    with CONNECT_JSON.sync_client(target.url) as client, pytest.raises(ConnectError) as raised:
        client.create_book(request, headers=LIBRARIAN)
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert raised.value.message.startswith(f"isbn {'9' * EXCERPT!r}… (100000 characters)")
    assert len(raised.value.message) <= MESSAGE + len(CUT_MARK)

    items = [pb.ImportBooksRequest(title="Bad", author="A", isbn=isbn)]
    with CONNECT_JSON.sync_client(target.url) as client:
        reply = client.import_books(iter(items), headers=LIBRARIAN)
    assert [f.isbn for f in reply.failures] == [isbn[:EXCERPT]]


@pytest.mark.parametrize("transport", ["http1", "http2"])
def test_errors_about_protocol_headers_stay_within_the_smallest_bound(
    start_target: Start, transport: str
) -> None:
    # connectrpc quotes these before any interceptor could cut its message.
    target = start_target(transport, SMALL_ERRORS)
    headers = {**JSON, "connect-timeout-ms": "9" * 4000}
    reply = send(target, f"{SERVICE}/GetBook", b'{"id": 1}', headers)
    message = str(reply.json()["message"])
    assert len(message) <= MESSAGE + len(CUT_MARK), message


@pytest.mark.parametrize("transport", ["http1", "http2"])
def test_a_body_that_stops_arriving_is_refused_after_the_body_timeout(
    start_target: Start, transport: str
) -> None:
    target = start_target(transport, SLOW_BODIES)
    with connect(target) as sock:
        sock.sendall(
            f"POST {SERVICE}/GetBook HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            "content-length: 100\r\n\r\n{".encode()
        )
        reply = read_until_closed(sock, within=BODY_TIMEOUT + 10)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    get_book_answers(target, within=1.0)


def test_a_body_that_keeps_arriving_is_served_past_the_body_timeout(start_target: Start) -> None:
    # The body clock restarts at every read: a slow but steady body is not cut,
    # however long it takes in all. (The headers arrive whole in one read.)
    target = start_target("http1", SLOW_BODIES)
    pieces = [NO_SUCH_BOOK[i : i + 2] for i in range(0, len(NO_SUCH_BOOK), 2)]
    pause = BODY_TIMEOUT / 5
    assert len(pieces) * pause > 2 * BODY_TIMEOUT
    with connect(target) as sock:
        sock.sendall(
            f"POST {SERVICE}/GetBook HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(NO_SUCH_BOOK)}\r\nconnection: close\r\n\r\n".encode()
        )
        for piece in pieces:
            time.sleep(pause)  # The client's pace, well within the body timeout.
            sock.sendall(piece)
        reply = read_until_closed(sock, within=10)
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]
    assert b"not_found" in reply
