"""Fixtures: a real server per backend, an admin token, and CI's no-skip rule."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from tests.support.postgres import PostgresCluster, find_bin_dir
from tests.support.server import ServerFactory, ServerProcess

ADMIN_TOKEN = "lib_test-admin-token-0123456789abcdefghijklmnop"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skip is a failure: a missing dependency must not pass silently."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark the PostgreSQL tests, so ``-m "not postgres"`` runs without PostgreSQL."""
    callspec = getattr(item, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("backend") == "postgres"
    if on_postgres or "postgres_cluster" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend the server under test uses: every server test runs on both."""
    return str(request.param)


@contextmanager
def new_postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of its own, on a unix socket; stopped and deleted on exit."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        # In CI the skip hook above turns this into a failure.
        pytest.skip("PostgreSQL server binaries are missing: apt-get install -y postgresql")
    cluster = PostgresCluster(bin_dir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The PostgreSQL cluster of this test run; stopped at the end."""
    with new_postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def database_factory(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Callable[[], str]:
    """Makes a fresh, empty database of the current backend and returns its URL."""
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        return cluster.create_database
    counter = iter(range(10**6))

    def make() -> str:
        return str(tmp_path_factory.mktemp("db") / f"library-{next(counter)}.db")

    return make


@pytest.fixture(scope="session")
def servers(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerFactory]:
    """Starts servers of either kind on fresh databases, with the admin token; stops them all."""
    factory = ServerFactory(
        database_factory,
        lambda kind: tmp_path_factory.mktemp(kind) / "server.log",
        {"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def server_factory(servers: ServerFactory) -> Callable[..., ServerProcess]:
    """Starts HTTP/1.1 servers (on a fresh database unless given one)."""
    return partial(servers.start, ServerProcess)


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
