"""A request pipelined behind another in the same read gets the same header bounds (HTTP/1.1)."""

from __future__ import annotations

import re
import time

from tests.hostile.conftest import LIMITS, Start
from tests.hostile.raw import NO_SUCH_BOOK, SERVICE, connect, read_until_closed, send_while_open

HEADER_TIMEOUT = float(LIMITS["LIBRARY_HEADER_TIMEOUT"])
LIMIT = int(LIMITS["LIBRARY_MAX_HEADER_BYTES"])
# Far past the header timeout, so a close by the idle timeout cannot pass for a 408.
IDLE_TIMEOUT = 30.0
GET_BOOK = (
    f"POST {SERVICE}/GetBook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(NO_SUCH_BOOK)}\r\n"
).encode()
SMALL_REQUEST = GET_BOOK + b"\r\n" + NO_SUCH_BOOK


def test_a_partial_request_after_a_whole_one_gets_408(start_target: Start) -> None:
    # The second request's first bytes arrive in the same read as the first
    # request, then nothing: its header clock must run from that read.
    target = start_target("http1", {"LIBRARY_IDLE_TIMEOUT": str(IDLE_TIMEOUT)})
    with connect(target) as sock:
        started = time.monotonic()
        assert send_while_open(sock, SMALL_REQUEST + GET_BOOK)
        answer = read_until_closed(sock, within=IDLE_TIMEOUT / 2)
        elapsed = time.monotonic() - started
    assert _statuses(answer) == [b"404", b"408"], answer[:500]
    assert elapsed >= HEADER_TIMEOUT, f"refused after {elapsed:.1f}s"


def test_an_oversized_request_after_a_small_one_gets_431(start_target: Start) -> None:
    target = start_target("http1")
    big = GET_BOOK + b"X-Big: " + b"a" * (LIMIT * 2) + b"\r\n\r\n" + NO_SUCH_BOOK
    with connect(target) as sock:
        send_while_open(sock, SMALL_REQUEST + SMALL_REQUEST + big)
        answer = read_until_closed(sock, within=10)
    # Each answer goes to its own request: the small ones' first, then the big
    # one's refusal; it is never served.
    assert _statuses(answer) == [b"404", b"404", b"431"], answer[:500]


def test_pipelined_requests_within_the_bounds_are_all_served(start_target: Start) -> None:
    target = start_target("http1")
    padded = GET_BOOK + b"X-Padding: " + b"p" * (LIMIT // 2) + b"\r\n\r\n" + NO_SUCH_BOOK
    last = GET_BOOK + b"Connection: close\r\n\r\n" + NO_SUCH_BOOK
    with connect(target) as sock:
        assert send_while_open(sock, SMALL_REQUEST + padded + padded + last)
        answer = read_until_closed(sock, within=10)
    assert _statuses(answer) == [b"404"] * 4, answer[:500]


def _statuses(answer: bytes) -> list[bytes]:
    """The status codes of the HTTP/1.1 responses in ``answer``, in order."""
    return re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", answer)
