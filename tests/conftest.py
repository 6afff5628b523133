"""Fixtures: a real server per backend, an admin token, and CI's no-skip rule."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

ADMIN_TOKEN = "lib_test-admin-token-0123456789abcdefghijklmnop"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In CI a skip is a failure: a missing dependency must not pass silently."""
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"


@pytest.fixture(scope="session", params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend the server under test uses."""
    return str(request.param)


@pytest.fixture(scope="session")
def database_factory(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """Makes a fresh, empty database of the current backend and returns its URL."""
    counter = iter(range(10**6))

    def make() -> str:
        return str(tmp_path_factory.mktemp("db") / f"library-{next(counter)}.db")

    return make


@pytest.fixture(scope="session")
def server_factory(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServerProcess]]:
    """Starts servers (on a fresh database unless given one); stops them all at the end."""
    started: list[ServerProcess] = []

    def start(
        database_url: str | None = None,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> ServerProcess:
        log = tmp_path_factory.mktemp("server") / "server.log"
        server = ServerProcess(
            database_url or database_factory(),
            log,
            args=args,
            env={"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})},
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """One server shared by the tests that only add their own data."""
    return server_factory()


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (screenshots)."""
    path = Path(__file__).resolve().parents[1] / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
