"""Plain HTTP probes: /healthz while the process runs, /readyz until it starts draining."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import grpc
import pytest

from server.app.serve import SAME_STOP_SECONDS
from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.http2.conftest import grpc_stubs  # noqa: F401 (a fixture used here)
from tests.http2.stubs import GrpcStubs
from tests.multiprocess.procs import holding_connection_from, workers_of
from tests.support.clients import LIBRARIAN, present
from tests.support.data import isbn13
from tests.support.pausing import paused
from tests.support.postgres import PostgresCluster
from tests.support.server import READY_TIMEOUT, Http2Server, ServerProcess, health, wait_until

# Long enough that only a second signal ends it within a test.
LONG_DRAIN = {"LIBRARY_DRAIN_SECONDS": "120"}
PROMPTLY = 5.0


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


def serves_while_not_ready(url: str, book_id: int) -> None:
    """Within the drain period: /readyz 503, /healthz 200, calls answered."""
    wait_until(
        lambda: probe(f"{url}/readyz") == (503, "draining\n"), PROMPTLY, "/readyz to say draining"
    )
    assert probe(f"{url}/healthz") == (200, "ok\n")
    assert health(url) == "NOT_SERVING"
    with LibraryServiceClientSync(url) as client:
        assert present(client.get_book(pb.GetBookRequest(id=book_id)).book).id == book_id


def each_worker_says_draining(server: ServerProcess, workers: list[int]) -> None:
    """Each of the supervisor's ``workers`` (none: it serves alone), asked alone, answers 503.

    Workers share one listening socket, so which one accepts a connection is the
    kernel's choice; with the others stopped (SIGSTOP), only the one asked can.
    Which process holds the connection is then read from /proc, not assumed.
    """
    if workers:
        # Once the supervisor has passed the signal on, it waits for its workers
        # without pinging them (a stopped one would miss a ping and be killed).
        passed_on = [f"Terminated child process [{pid}]" for pid in workers]
        wait_until(
            lambda: all(line in server.log_text() for line in passed_on),
            PROMPTLY,
            "the supervisor to pass the signal on",
        )
    serving = workers or [server.pid]
    for worker in serving:
        draining = (worker, 503, "draining\n")
        with paused(*(other for other in serving if other != worker)):
            wait_until(
                lambda draining=draining: answer_alone(server, serving) == draining,
                PROMPTLY,
                f"process {worker} to say draining",
            )


def answer_alone(server: ServerProcess, serving: list[int]) -> tuple[int, int, str]:
    """Which of ``serving`` answered /readyz on a connection of its own, and its answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        answer = response.status, response.read().decode()
        client_port = connection.sock.getsockname()[1]
        (holder,) = holding_connection_from(serving, server.port, client_port)
        return holder, *answer
    finally:
        connection.close()


def add_a_book(url: str) -> int:
    """A new book's id."""
    request = pb.CreateBookRequest(title="Drained", author="A", isbn=isbn13(), published_year=2001)
    with LibraryServiceClientSync(url) as client:
        return present(client.create_book(request, headers=LIBRARIAN).book).id


@pytest.mark.parametrize(("workers", "everyone"), [(1, False), (2, False), (2, True)])
def test_drain_period_serves_until_a_second_signal(
    server_factory: Callable[..., ServerProcess], workers: int, everyone: bool
) -> None:
    """``everyone``: every process hears the signal, as under systemd's default KillMode.

    The workers then hear it twice (directly and from the supervisor): still one
    request to stop, so the drain period goes on.
    """
    # At info, each worker logs its start and the supervisor each signal it passes on.
    server = server_factory(
        args=("--workers", str(workers)), env={**LONG_DRAIN, "LIBRARY_LOG_LEVEL": "info"}
    )
    # The server serves once one worker does; a worker still starting would take
    # the signal as uvicorn's own, before the app's drain handler is installed.
    wait_until(
        lambda: server.log_text().count("Application startup complete.") == workers,
        READY_TIMEOUT,
        "every worker to start",
    )
    book_id = add_a_book(server.url)
    workers_pids = workers_of(server.pid)
    assert len(workers_pids) == (workers if workers > 1 else 0)
    for pid in [server.pid, *(workers_pids if everyone else [])]:
        os.kill(pid, signal.SIGTERM)
    serves_while_not_ready(server.url, book_id)
    # A signal within SAME_STOP_SECONDS of a worker's first is the same request to
    # stop, so the time is the point: after it, every worker must still be draining.
    time.sleep(SAME_STOP_SECONDS)
    serves_while_not_ready(server.url, book_id)
    # Asked only now: a worker stopped (SIGSTOP) with the duplicate signal still
    # pending would hear it late, as a second one, and end its drain.
    each_worker_says_draining(server, workers_pids)
    assert server.running()
    started = time.monotonic()
    assert server.stop() == 0  # the second SIGTERM
    assert time.monotonic() - started < PROMPTLY


def test_drain_period_ends_by_itself(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(env={"LIBRARY_DRAIN_SECONDS": "1"})
    started = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    wait_until(lambda: not server.running(), 1 + PROMPTLY, "the server to exit")
    assert time.monotonic() - started >= 1
    assert server.stop() == 0  # exited already: its exit code


def test_drain_period_on_http2(h2_factory: Callable[..., Http2Server]) -> None:
    server = h2_factory(env=LONG_DRAIN)
    book_id = add_a_book(server.url)
    server.send_signal(signal.SIGTERM)
    serves_while_not_ready(server.url, book_id)
    assert server.running()
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert time.monotonic() - started < PROMPTLY


def test_not_ready_while_draining(
    h2_factory: Callable[..., Http2Server],
    grpc_stubs: GrpcStubs,  # noqa: F811 (the imported fixture)
) -> None:
    server = h2_factory()
    assert probe(f"{server.url}/readyz") == (200, "ready\n")
    with grpc.insecure_channel(server.target) as channel:
        # An open search holds the server in its drain until the client ends it.
        search = grpc_stubs.open_search(channel)
        search.ask("anything")
        server.send_signal(signal.SIGTERM)
        wait_until(
            lambda: probe(f"{server.url}/readyz") == (503, "draining\n"),
            5,
            "/readyz to say draining",
        )
        assert probe(f"{server.url}/healthz") == (200, "ok\n")
        assert search.end() == []
    assert server.wait() == 0


def test_not_ready_while_the_database_refuses(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    # A role and database of its own, so cutting them off touches no other test.
    role = f"probe_{uuid.uuid4().hex[:12]}"
    admin(postgres_cluster, f"CREATE ROLE {role} LOGIN", f"CREATE DATABASE {role} OWNER {role}")
    url = f"postgresql://{role}@/{role}?host={postgres_cluster.dir}"
    server = ServerProcess(url, tmp_path / "server.log").start()
    try:
        cut_off_and_restore(postgres_cluster, role, server)
    finally:
        server.stop()


def cut_off_and_restore(cluster: PostgresCluster, role: str, server: ServerProcess) -> None:
    """/readyz goes 503 while ``role`` may not connect, and 200 once it may again."""
    assert probe(f"{server.url}/readyz") == (200, "ready\n")

    admin(
        cluster,
        f"ALTER ROLE {role} CONNECTION LIMIT 0",
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
    )
    wait_until(
        lambda: probe(f"{server.url}/readyz") == (503, "storage unreachable: Unavailable\n"),
        10,
        "/readyz to say the storage is unreachable",
    )
    assert probe(f"{server.url}/healthz") == (200, "ok\n")

    admin(cluster, f"ALTER ROLE {role} CONNECTION LIMIT -1")
    wait_until(lambda: probe(f"{server.url}/readyz")[0] == 200, 10, "/readyz to recover")


def admin(cluster: PostgresCluster, *statements: str) -> None:
    """Run ``statements`` as the cluster's superuser."""

    async def run() -> None:
        conn = await asyncpg.connect(cluster.url("postgres"))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())
