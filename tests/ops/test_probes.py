"""Plain HTTP probes: /healthz while the process runs, /readyz until it starts draining."""

from __future__ import annotations

import asyncio
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import grpc

from tests.http2.conftest import grpc_stubs  # noqa: F401 (a fixture used here)
from tests.http2.stubs import GrpcStubs
from tests.support.postgres import PostgresCluster
from tests.support.server import Http2Server, ServerProcess, wait_until


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
