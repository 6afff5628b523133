"""HTTP/2 streams opened and reset by a raw client: the request is sent, the response cut off."""

from __future__ import annotations

import contextlib
import socket
import time

import h2.config
import h2.connection
import h2.errors
import h2.exceptions

from tests.hostile.raw import SERVICE, Target

HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":authority", "library"),
    (":path", f"{SERVICE}/GetBook"),
    ("content-type", "application/json"),
]
"""A unary Connect call's request headers (GetBook, JSON)."""


def reset_until(
    target: Target, headers: list[tuple[str, str]], body: bytes, deadline: float
) -> int:
    """Open streams with ``body``, reset them as answers start, until ``deadline``; the count."""
    streams = 0
    while time.monotonic() < deadline:
        with socket.create_connection((target.host, target.port), timeout=5) as sock:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            sock.settimeout(0.002)
            streams += _open_then_reset(sock, conn, headers, body, deadline)
    return streams


def _open_then_reset(
    sock: socket.socket,
    conn: h2.connection.H2Connection,
    headers: list[tuple[str, str]],
    body: bytes,
    deadline: float,
) -> int:
    """Open streams ten at a time, let responses start, reset them; the count opened."""
    opened = 0
    try:
        while time.monotonic() < deadline:
            ids: list[int] = []
            for _ in range(10):
                ids.append(conn.get_next_available_stream_id())
                conn.send_headers(ids[-1], headers)
                conn.send_data(ids[-1], body, end_stream=True)
            sock.sendall(conn.data_to_send())
            opened += len(ids)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                return opened
            if data:
                conn.receive_data(data)
            for stream in ids:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        pass
    return opened


def assert_log_clean(target: Target) -> None:
    """The server logged no traceback, nor what asyncio logs when futures go wrong."""
    log = target.log.read_text(errors="replace")
    for noise in ("Traceback", "InvalidStateError", "Exception in callback", "never retrieved"):
        assert noise not in log
