"""SQLite: a write lock held elsewhere for too long is UNAVAILABLE (retry), not INTERNAL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.domain.errors import Unavailable
from server.domain.models import NewBook
from server.storage.sqlite import SQLiteStorage
from tests.conftest import ADMIN_TOKEN
from tests.support.clients import CONNECT_PROTO, LIBRARIAN, add_book, book_request
from tests.support.data import isbn13
from tests.support.held_writes import write_lock_held
from tests.support.server import ServerProcess
from tests.support.storage_calls import READS, WRITES, operations

pytestmark = pytest.mark.anyio


def new_book() -> NewBook:
    """A valid book with a fresh ISBN."""
    return NewBook("Locked Out", "L", isbn13(), 2000)


async def test_storage_reports_a_lock_held_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    storage = SQLiteStorage(str(path), event_retention=0, busy_timeout=0.1)
    await storage.open()
    try:
        with write_lock_held(path):
            with pytest.raises(Unavailable, match="busy; retry"):
                await storage.create_book(new_book(), datetime.now(UTC))
            # WAL readers do not wait for the writer.
            assert await storage.get_book(1) is None
        # The refused write left nothing half-open: the next one goes through.
        created = await storage.create_book(new_book(), datetime.now(UTC))
        assert await storage.get_book(created.id) == created
    finally:
        await storage.close()


def test_the_calls_below_cover_every_storage_operation() -> None:
    assert set(READS) | set(WRITES) == operations()


@pytest.mark.parametrize("name", sorted(WRITES))
async def test_every_write_reports_a_lock_held_past_the_busy_timeout(
    name: str, tmp_path: Path
) -> None:
    # Outages are translated where the adapter runs a write, not per method:
    # none can miss it. (Reads never wait for the lock.)
    path = tmp_path / "library.db"
    storage = SQLiteStorage(str(path), event_retention=0, busy_timeout=0.1)
    await storage.open()
    try:
        with write_lock_held(path), pytest.raises(Unavailable, match="busy; retry"):
            await WRITES[name](storage)
    finally:
        await storage.close()


async def test_server_answers_unavailable_while_the_database_stays_locked(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    server = ServerProcess(
        str(path), tmp_path / "server.log", env={"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN}
    ).start()
    try:
        async with CONNECT_PROTO.client(server.url) as client:
            with write_lock_held(path), pytest.raises(ConnectError) as refused:
                await client.create_book(book_request("locked"), headers=LIBRARIAN)
            assert refused.value.code is Code.UNAVAILABLE
            assert "retry" in refused.value.message
            # Retrying once the lock is released succeeds.
            assert (await add_book(client, "after")).id > 0
    finally:
        server.stop()
