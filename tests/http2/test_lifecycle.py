"""Health over gRPC, the graceful drain on SIGTERM, and TLS."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.http2.conftest import ADMIN, TlsFiles
from tests.http2.stubs import GrpcStubs
from tests.support.data import isbn13
from tests.support.server import Http2Server, wait_until

Status = health_pb2.HealthCheckResponse


def health(channel: grpc.Channel, service: str = "") -> Any:
    """The standard health check's answer for ``service``."""
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_serving(channel: grpc.Channel) -> None:
    assert health(channel) == Status.SERVING
    assert health(channel, "library.v1.LibraryService") == Status.SERVING


def test_sigterm_drains_then_exits(
    h2_factory: Callable[..., Http2Server], grpc_stubs: GrpcStubs
) -> None:
    pb = grpc_stubs.pb
    server = h2_factory()
    with grpc.insecure_channel(server.target) as channel:
        library = grpc_stubs.library(channel)
        title = f"Drained {isbn13()}"
        library.CreateBook(
            pb.CreateBookRequest(title=title, author="A", isbn=isbn13(), published_year=2000),
            metadata=ADMIN,
            timeout=10,
        )
        watch = library.WatchBooks(pb.WatchBooksRequest(since_revision=0), timeout=30)
        assert next(watch).event.book.title == title

        # An open search holds the server in its drain until the client ends it.
        search = grpc_stubs.open_search(channel)
        assert len(search.ask(title).books) == 1

        server.send_signal(signal.SIGTERM)
        wait_until(lambda: health(channel) == Status.NOT_SERVING, 5, "health NOT_SERVING")
        # The watch ends cleanly, so the client resumes elsewhere from its last revision.
        rest: list[Any] = []
        ender = threading.Thread(target=lambda: rest.extend(watch))
        ender.start()
        ender.join(10)
        assert not ender.is_alive(), "the watch did not end on drain"
        assert (rest, watch.code()) == ([], grpc.StatusCode.OK)

        # Open streams still work while draining.
        assert search.ask(title).query == title
        assert server.running()
        assert search.end() == []
        assert server.wait() == 0


def test_drain_is_bounded_by_the_shutdown_timeout(
    h2_factory: Callable[..., Http2Server], grpc_stubs: GrpcStubs
) -> None:
    server = h2_factory(env={"LIBRARY_SHUTDOWN_TIMEOUT": "1"})
    with grpc.insecure_channel(server.target) as channel:
        search = grpc_stubs.open_search(channel)
        search.ask("anything")
        stopped_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # The client never ends its stream; the server stops anyway, on time.
        assert server.wait() == 0
        assert 1 <= time.monotonic() - stopped_at < 5
        with pytest.raises(grpc.RpcError):
            search.end()


def test_tls(
    h2_factory: Callable[..., Http2Server], grpc_stubs: GrpcStubs, tls_files: TlsFiles
) -> None:
    root = tls_files.cert.read_bytes()
    server = h2_factory(
        args=("--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)),
        tls_root_cert=root,
    )
    assert server.url.startswith("https://")
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
        assert health(channel) == Status.SERVING
        missing = grpc_stubs.pb.GetBookRequest(id=10**12)
        with pytest.raises(grpc.RpcError) as caught:
            grpc_stubs.library(channel).GetBook(missing, timeout=10)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
