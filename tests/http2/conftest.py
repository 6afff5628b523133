"""Fixtures: ``library serve --http2`` servers, grpcio channels and stubs, TLS files."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from connectrpc.protocol import ProtocolType
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.conftest import ADMIN_TOKEN
from tests.http2.stubs import GrpcStubs, generate
from tests.support.data import isbn13
from tests.support.server import Http2Server, ServerFactory

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


@pytest.fixture(scope="session")
def grpc_stubs(tmp_path_factory: pytest.TempPathFactory) -> GrpcStubs:
    """grpcio stubs generated from proto/ for this session only."""
    return generate(tmp_path_factory.mktemp("grpc_gen"))


@pytest.fixture(scope="session")
def h2_factory(servers: ServerFactory) -> Callable[..., Http2Server]:
    """Starts HTTP/2 servers on fresh databases (``tls_root_cert`` to check one serving TLS)."""
    return partial(servers.start, Http2Server)


@pytest.fixture(scope="session")
def h2_server(h2_factory: Callable[..., Http2Server]) -> Http2Server:
    """One h2c server shared by tests that only add their own data."""
    return h2_factory()


@pytest.fixture(scope="session")
def channel(h2_server: Http2Server) -> Iterator[grpc.Channel]:
    """A grpcio channel over h2c to the shared server."""
    with grpc.insecure_channel(h2_server.target) as channel:
        yield channel


@pytest.fixture(scope="session")
def library(channel: grpc.Channel, grpc_stubs: GrpcStubs) -> Any:
    """The grpcio ``LibraryServiceStub`` on the shared server."""
    return grpc_stubs.library(channel)


@dataclass(frozen=True)
class Member:
    """A member created through the API, with the metadata that signs in as them."""

    id: str
    metadata: tuple[tuple[str, str], ...]


@pytest.fixture
def new_member(library: Any, grpc_stubs: GrpcStubs) -> Callable[[], Member]:
    """Creates a fresh member (role MEMBER) on the shared server."""
    counter = iter(range(1000))

    def make() -> Member:
        response = library.CreateMember(
            grpc_stubs.pb.CreateMemberRequest(
                name=f"member-{isbn13()}-{next(counter)}", role=grpc_stubs.pb.ROLE_MEMBER
            ),
            metadata=ADMIN,
            timeout=10,
        )
        return Member(response.member.id, (("authorization", f"Bearer {response.token}"),))

    return make


@pytest.fixture
def new_book(library: Any, grpc_stubs: GrpcStubs) -> Callable[..., Any]:
    """Creates a fresh book on the shared server and returns it."""

    def make(title: str = "A Book", author: str = "An Author") -> Any:
        request = grpc_stubs.pb.CreateBookRequest(
            title=title, author=author, isbn=isbn13(), published_year=2001
        )
        return library.CreateBook(request, metadata=ADMIN, timeout=10).book

    return make


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for localhost and its key."""

    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A fresh self-signed certificate for localhost/127.0.0.1, made with the openssl CLI."""
    out = tmp_path_factory.mktemp("tls")
    files = TlsFiles(out / "cert.pem", out / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(files.key), "-out", str(files.cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return files


@pytest.fixture
def h2_client(h2_server: Http2Server) -> Iterator[Callable[..., LibraryServiceClientSync]]:
    """Makes connectrpc clients over HTTP/2 (prior knowledge), which set no deadline of their own.

    Call it with a protocol and any further LibraryServiceClientSync options.
    """
    transport = SyncHTTPTransport(http_version=HTTPVersion.HTTP2)
    http = SyncClient(transport)
    clients: list[LibraryServiceClientSync] = []

    def make(protocol: ProtocolType, **options: Any) -> LibraryServiceClientSync:
        client = LibraryServiceClientSync(
            h2_server.url, protocol=protocol, http_client=http, **options
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    transport.close()
