"""/metrics (served by the launcher) is bounded too: connections at once, and silence."""

from __future__ import annotations

import select
import socket
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from urllib.parse import urlsplit

from server.app.telemetry.endpoint import MAX_SCRAPES
from tests.ops.conftest import metrics_url
from tests.support.server import ServerProcess, wait_until

SILENCE = 1
EXTRA = 5
PROMPTLY = 5.0
REFUSED = "/metrics: 8 connections open, its limit"


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has hung up on ``sock`` (it never sent anything)."""
    sock.settimeout(PROMPTLY)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_and_surplus_scrape_connections_are_closed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        env={"LIBRARY_METRICS_PORT": "0", "LIBRARY_HEADER_TIMEOUT": str(SILENCE)}
    )
    url = metrics_url(server.log_path)
    address = urlsplit(url)
    assert f"{MAX_SCRAPES} connections" in REFUSED
    with ExitStack() as stack:
        # Connections that say nothing: each held a thread of the launcher for ever.
        held = [
            stack.enter_context(socket.create_connection((address.hostname, address.port)))
            for _ in range(MAX_SCRAPES + EXTRA)
        ]
        wait_until(
            lambda: server.log_text().count(REFUSED) == EXTRA,
            PROMPTLY,
            "the connections past the limit to be refused",
        )
        # Those served are hung up on once silent for LIBRARY_HEADER_TIMEOUT.
        assert all(closed_by_server(sock) for sock in held)
    with urllib.request.urlopen(url, timeout=PROMPTLY) as response:
        assert response.status == 200
        assert b"library_" in response.read()


def test_a_trickling_scrape_connection_is_hung_up_on(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        env={"LIBRARY_METRICS_PORT": "0", "LIBRARY_HEADER_TIMEOUT": str(SILENCE)}
    )
    address = urlsplit(metrics_url(server.log_path))
    # Before connecting: the server's clock may start as soon as it accepts.
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        # A header byte every fifth of the silence bound: no single read waits that long.
        while time.monotonic() - started < PROMPTLY + SILENCE:
            try:
                sock.sendall(b"x")
            except OSError:
                break
            if select.select([sock], [], [], SILENCE / 5)[0] and closed_by_server(sock):
                break
        held = time.monotonic() - started
    assert SILENCE <= held < SILENCE + PROMPTLY, held
