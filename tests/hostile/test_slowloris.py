"""Slow clients are timed out and capped; well-behaved ones keep being served meanwhile."""

from __future__ import annotations

import http.client
import socket
import time

from tests.hostile.conftest import LIMITS, Start
from tests.hostile.raw import (
    JSON,
    NO_SUCH_BOOK,
    SERVICE,
    Target,
    connect,
    get_book_answers,
    read_until_closed,
    send_while_open,
)

HEADER_TIMEOUT = float(LIMITS["LIBRARY_HEADER_TIMEOUT"])
ATTACKERS = 40


def test_trickling_headers_are_cut_off_while_others_are_served(target: Target) -> None:
    attackers = [connect(target) for _ in range(ATTACKERS)]
    try:
        for sock in attackers:
            assert send_while_open(sock, b"GET / HTTP/1.1\r\nHost: x\r\n")
        open_ = set(range(ATTACKERS))
        deadline = time.monotonic() + HEADER_TIMEOUT + 10
        while open_:
            assert time.monotonic() < deadline, f"{len(open_)} slow clients still connected"
            # Well-behaved clients are answered promptly throughout.
            get_book_answers(target, within=1.0)
            for i in sorted(open_):
                if not send_while_open(attackers[i], b"X-Slow: 1\r\n") or _closed(attackers[i]):
                    open_.discard(i)
    finally:
        for sock in attackers:
            sock.close()
    get_book_answers(target, within=1.0)


def test_a_silent_connection_is_closed_by_the_header_timeout(start_target: Start) -> None:
    # Envoy counts the header time from the first byte; a silent connection
    # there ends with the idle timeout, set short for this server.
    for transport in ("http1", "http2"):
        target = start_target(transport, {"LIBRARY_IDLE_TIMEOUT": "2"})
        with connect(target) as sock:
            read_until_closed(sock, within=HEADER_TIMEOUT + 10)
        get_book_answers(target, within=1.0)


def test_connections_past_the_cap_are_refused_cleanly(start_target: Start) -> None:
    cap = 8
    for transport in ("http1", "http2"):
        target = start_target(
            transport, {"LIBRARY_MAX_CONNECTIONS": str(cap), "LIBRARY_HEADER_TIMEOUT": "60"}
        )
        held = [_served_connection(target) for _ in range(cap)]
        try:
            with connect(target) as extra:
                send_while_open(extra, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = read_until_closed(extra, within=10)
            # uvicorn answers 503 with Retry-After; Envoy closes the connection at once.
            if transport == "http1":
                assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
                assert b"retry-after: 1" in answer
            else:
                assert answer == b"", answer[:200]
        finally:
            for sock in held:
                sock.close()
        _wait_until_served(target)


def _served_connection(target: Target) -> http.client.HTTPConnection:
    """A kept-alive connection that the server has accepted and answered on."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=10)
    conn.request("POST", f"{SERVICE}/GetBook", NO_SUCH_BOOK, JSON)
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    return conn


def _wait_until_served(target: Target) -> None:
    """Once the held connections are gone, new ones are served again."""
    deadline = time.monotonic() + 10
    while True:
        try:
            get_book_answers(target, within=1.0)
            return
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (it may have sent a 408 first)."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)
    return data == b"" or data.startswith(b"HTTP/1.1 408")


def test_a_kept_alive_connection_outlives_the_header_timeout(target: Target) -> None:
    # Many prompt requests on one connection, over several header timeouts: the
    # clock runs per request, not per connection.
    conn = _served_connection(target)
    try:
        ends = time.monotonic() + 3 * HEADER_TIMEOUT
        while time.monotonic() < ends:
            conn.request("POST", f"{SERVICE}/GetBook", NO_SUCH_BOOK, JSON)
            response = conn.getresponse()
            response.read()
            assert response.status == 404
            time.sleep(HEADER_TIMEOUT / 4)  # The pace of this client's requests.
    finally:
        conn.close()
