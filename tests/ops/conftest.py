"""Servers with every telemetry on: spans to an OTLP receiver in the test, /metrics, access log."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from connectrpc.protocol import ProtocolType
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.http2.conftest import h2_factory  # noqa: F401 (a fixture used here)
from tests.ops.collector import OtlpCollector
from tests.support.server import Http2Server, ServerProcess, wait_until

_METRICS_URL = re.compile(r"library metrics on (http://[\d.]+:\d+/metrics)")


def metrics_url(log_path: Path) -> str:
    """The /metrics address a server printed at start-up."""
    found: list[str] = []

    def printed() -> bool:
        found.extend(_METRICS_URL.findall(log_path.read_text(errors="replace")))
        return bool(found)

    wait_until(printed, 10, f"the metrics address in {log_path}")
    return found[-1]


def telemetry_env(collector: OtlpCollector) -> dict[str, str]:
    """Tracing to ``collector`` (batches sent every 50 ms), /metrics on a free port, access log."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "LIBRARY_METRICS_PORT": "0",
        "LIBRARY_LOG_LEVEL": "info",
    }


@pytest.fixture(scope="session")
def collector() -> Iterator[OtlpCollector]:
    """The OTLP receiver every observed server sends its spans to."""
    receiver = OtlpCollector()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def observed(
    server_factory: Callable[..., ServerProcess], collector: OtlpCollector
) -> ServerProcess:
    """An HTTP/1.1 server (Connect, gRPC-Web) with telemetry on and a JSON access log."""
    return server_factory(env={**telemetry_env(collector), "LIBRARY_LOG_FORMAT": "json"})


@pytest.fixture(scope="session")
def observed_h2(
    h2_factory: Callable[..., Http2Server],  # noqa: F811 (the imported fixture)
    collector: OtlpCollector,
) -> Http2Server:
    """An HTTP/2 server (gRPC) with telemetry on and the text access log."""
    return h2_factory(env=telemetry_env(collector))


@dataclass(frozen=True)
class Traced:
    """A client on one protocol, and the headers that make its calls part of a fresh trace."""

    protocol: str
    client: LibraryServiceClientSync
    server_log: Path

    def new_trace(self) -> tuple[str, str, dict[str, str]]:
        """A new trace id, the client's span id, and the ``traceparent`` header carrying them."""
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        return trace_id, span_id, {"traceparent": f"00-{trace_id}-{span_id}-01"}


PROTOCOLS = ("connect", "grpc-web", "grpc")


@contextmanager
def grpc_client(server: Http2Server) -> Iterator[LibraryServiceClientSync]:
    """A connectrpc client speaking gRPC over HTTP/2 (prior knowledge) to ``server``."""
    transport = SyncHTTPTransport(http_version=HTTPVersion.HTTP2)
    client = LibraryServiceClientSync(
        server.url, protocol=ProtocolType.GRPC, http_client=SyncClient(transport)
    )
    try:
        yield client
    finally:
        client.close()
        transport.close()


@pytest.fixture(params=PROTOCOLS)
def traced(
    request: pytest.FixtureRequest, observed: ServerProcess, observed_h2: Http2Server
) -> Iterator[Traced]:
    """A client per wire protocol: Connect and gRPC-Web on HTTP/1.1, gRPC on HTTP/2."""
    protocol: str = request.param
    if protocol == "grpc":
        with grpc_client(observed_h2) as client:
            yield Traced(protocol, client, observed_h2.log_path)
        return
    kind = ProtocolType.CONNECT if protocol == "connect" else ProtocolType.GRPC_WEB
    with LibraryServiceClientSync(observed.url, protocol=kind) as client:
        yield Traced(protocol, client, observed.log_path)
