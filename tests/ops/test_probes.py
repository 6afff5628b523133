"""Plain HTTP probes: /healthz while the process runs, /readyz until it starts draining."""

from __future__ import annotations

import queue
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from tests.http2.conftest import grpc_stubs  # noqa: F401 (a fixture used here)
from tests.http2.server import Http2Server
from tests.http2.stubs import GrpcStubs
from tests.support.server import ServerProcess, wait_until


def probe(url: str) -> tuple[int, str]:
    """The status and body of a plain GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_alive_and_ready(server: ServerProcess) -> None:
    assert probe(f"{server.url}/healthz") == (200, "ok\n")
    assert probe(f"{server.url}/readyz") == (200, "ready\n")


def test_not_ready_while_draining(
    h2_factory: Callable[..., Http2Server],
    grpc_stubs: GrpcStubs,  # noqa: F811 (the imported fixture)
) -> None:
    server = h2_factory()
    assert probe(f"{server.url}/readyz") == (200, "ready\n")
    with grpc.insecure_channel(server.target) as channel:
        # An open search holds the server in its drain until the client ends it.
        outbox: queue.Queue[Any] = queue.Queue()

        def requests() -> Iterator[Any]:
            while (item := outbox.get(timeout=30)) is not None:
                yield item

        search = grpc_stubs.library(channel).SearchBooks(requests(), timeout=30)
        outbox.put(grpc_stubs.pb.SearchBooksRequest(query="anything"))
        next(search)
        server.send_signal(signal.SIGTERM)
        wait_until(
            lambda: probe(f"{server.url}/readyz") == (503, "draining\n"),
            5,
            "/readyz to say draining",
        )
        assert probe(f"{server.url}/healthz") == (200, "ok\n")
        outbox.put(None)
        assert list(search) == []
    assert server.wait() == 0
