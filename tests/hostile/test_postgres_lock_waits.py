"""PostgreSQL: a write waiting for a lock held elsewhere is UNAVAILABLE in bounded time, not hung.

Every write takes the event-head row; here another session holds it, as a long
transaction of an operator's or a stuck client's would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.conftest import ADMIN_TOKEN
from tests.support.clients import CONNECT_JSON, LIBRARIAN
from tests.support.data import isbn13
from tests.support.held_writes import writes_held
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

LOCK_WAIT = 5.0  # the storage's answer timeout, as SQLite's busy timeout
# Past the bound, give or take a busy machine, and well short of the client's deadline.
CLIENT_DEADLINE_MS = 30_000
BOUND_SECONDS = 3 * LOCK_WAIT


def new_book() -> pb.CreateBookRequest:
    return pb.CreateBookRequest(title="Locked", author="A", isbn=isbn13(), published_year=2001)


async def test_a_write_behind_a_held_lock_is_unavailable(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres_cluster.create_database()
    server = ServerProcess(url, tmp_path / "server.log", env={"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN})
    server.start()
    try:
        async with CONNECT_JSON.client(server.url) as client:
            async with writes_held(url):
                started = time.monotonic()
                with pytest.raises(ConnectError) as raised:
                    await client.create_book(
                        new_book(), headers=LIBRARIAN, timeout_ms=CLIENT_DEADLINE_MS
                    )
                waited = time.monotonic() - started
            assert raised.value.code is Code.UNAVAILABLE
            assert "retry" in raised.value.message
            assert LOCK_WAIT * 0.9 <= waited < BOUND_SECONDS
            # Released, the same write goes through.
            created = await client.create_book(new_book(), headers=LIBRARIAN)
            assert created.book is not None
    finally:
        await asyncio.to_thread(server.stop)
