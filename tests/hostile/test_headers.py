"""Request headers are bounded in size on both transports: 431, and memory stays flat."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import LIMITS
from tests.hostile.raw import (
    NO_SUCH_BOOK,
    Target,
    connect,
    get_book_answers,
    peak_growth,
    read_until_closed,
    send,
    send_while_open,
)

LIMIT = int(LIMITS["LIBRARY_MAX_HEADER_BYTES"])
REQUEST_START = b"POST /library.v1.LibraryService/GetBook HTTP/1.1\r\nHost: x\r\nX-Big: "


@pytest.mark.parametrize("size", [LIMIT * 2, 1_000_000])
def test_a_header_past_the_bound_is_431(target: Target, size: int) -> None:
    with connect(target) as sock:
        # The server may answer and close before reading the whole header.
        send_while_open(sock, REQUEST_START + b"a" * size + b"\r\n\r\n")
        answer = read_until_closed(sock, within=10)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    get_book_answers(target, within=2.0)


def test_headers_within_the_bound_are_served(target: Target) -> None:
    reply = send(
        target,
        "/library.v1.LibraryService/GetBook",
        NO_SUCH_BOOK,
        {"content-type": "application/json", "x-padding": "p" * (LIMIT // 2)},
    )
    assert reply.status == 404, reply  # NOT_FOUND: the request got through.


def test_trickled_huge_headers_do_not_grow_memory(target: Target) -> None:
    sockets = [connect(target) for _ in range(4)]
    try:
        with peak_growth(target.pid) as growth:
            chunk = b"a" * 65536
            for sock in sockets:
                send_while_open(sock, REQUEST_START)
                # 32 MiB each, unless the server closes first; what it reads after
                # refusing (briefly, so that the client sees the 431) is dropped.
                for _ in range(512):
                    if not send_while_open(sock, chunk):
                        break
            for sock in sockets:
                assert read_until_closed(sock, within=10).startswith(b"HTTP/1.1 431")
    finally:
        for sock in sockets:
            sock.close()
    assert growth() < 64 * 1024 * 1024
    get_book_answers(target, within=2.0)
