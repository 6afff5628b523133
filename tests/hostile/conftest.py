"""Fixtures: one server per transport (uvicorn HTTP/1.1 and pyvoy HTTP/2), small limits.

Hostile-client limits do not depend on the storage backend, so these servers use
SQLite only. Limits are set low so that tests reach them quickly and with few sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.hostile.raw import Target
from tests.http2.stubs import GrpcStubs, generate
from tests.support.server import Http2Server, ServerFactory, ServerProcess

LIMITS = {
    "LIBRARY_HEADER_TIMEOUT": "1.5",
    "LIBRARY_MAX_HEADER_BYTES": "16384",
    "LIBRARY_MAX_IMPORT_FAILURES": "100",
}
"""The limits every hostile test server runs with."""

Start = Callable[..., Target]


@pytest.fixture(scope="session")
def start_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Start]:
    """Starts a server on a transport ("http1" or "http2") with LIMITS plus ``env``.

    A server with the same transport and ``env`` is started once and shared.
    """
    web = _web_dir_with_dotfiles(tmp_path_factory.mktemp("web"))
    servers = ServerFactory(
        lambda: str(tmp_path_factory.mktemp("hostile-db") / "library.db"),
        lambda kind: tmp_path_factory.mktemp(f"hostile-{kind}") / "server.log",
        {"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN, "LIBRARY_WEB_DIR": str(web), **LIMITS},
    )
    targets: dict[tuple[str, frozenset[tuple[str, str]]], Target] = {}

    def start(transport: str, env: dict[str, str] | None = None) -> Target:
        key = (transport, frozenset((env or {}).items()))
        if key not in targets:
            kind = ServerProcess if transport == "http1" else Http2Server
            # Both log at warning: these tests read only what a hostile client makes them say.
            server = servers.start(kind, env={"LIBRARY_LOG_LEVEL": "warning", **(env or {})})
            targets[key] = Target(
                transport, "127.0.0.1", server.port, server.log_path, server.pid, server.running
            )
        return targets[key]

    yield start
    servers.stop_all()


def _web_dir_with_dotfiles(web: Path) -> Path:
    """A built page, plus the dotfiles a careless deployment leaves beside it."""
    (web / "assets").mkdir()
    (web / "index.html").write_text("<!doctype html><title>Library</title>")
    (web / "assets" / "app.js").write_text("console.log('app');")
    (web / ".env").write_text("SECRET=1")
    (web / "assets" / ".app.js.swp").write_text("swap")
    (web / ".git").mkdir()
    (web / ".git" / "config").write_text("[core]")
    return web


@pytest.fixture(scope="session")
def grpc_stubs(tmp_path_factory: pytest.TempPathFactory) -> GrpcStubs:
    """grpcio stubs generated from proto/ for this session only."""
    return generate(tmp_path_factory.mktemp("grpc_gen"))


@pytest.fixture(scope="session", params=["http1", "http2"])
def target(request: pytest.FixtureRequest, start_target: Start) -> Target:
    """One shared server per transport, for tests that leave it as they found it."""
    return start_target(str(request.param))


def log_of(target: Target) -> str:
    """Everything ``target``'s server logged so far."""
    return Path(target.log).read_text(errors="replace")
