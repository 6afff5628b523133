"""Snapshots whose reader goes away mid-page (a reset stream) end cleanly on each backend.

SQLite reads snapshot pages on threads; a cancelled caller once closed the
connection under the running read and the process died with SIGSEGV (which
takes pytest down with it here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing, suppress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.domain.models import NewBook
from server.domain.storage import Storage
from server.storage import open_storage
from server.storage.sqlite import SQLiteStorage
from tests.support.data import isbn13
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

BOOKS = 400
CANCELLED_SNAPSHOTS = 300


async def snapshot_size(storage: Storage) -> int:
    """How many books one whole snapshot has."""
    async with aclosing(storage.snapshot_pages(BOOKS // 3)) as pages:
        return sum([len(books) async for _, books in pages])


async def cancel_snapshots(storage: Storage) -> None:
    """Fill the catalogue, then start snapshots and cancel each at a different point."""
    now = datetime.now(UTC)
    await asyncio.gather(
        *(storage.create_book(NewBook(f"B{i}", "A", isbn13(), 2000), now) for i in range(BOOKS))
    )
    for attempt in range(CANCELLED_SNAPSHOTS):
        pages = storage.snapshot_pages(BOOKS)
        page = asyncio.ensure_future(anext(pages))
        # Opening the connection, beginning the transaction, mid-page, after it.
        for _ in range(attempt % 7):
            await asyncio.sleep(0)
        page.cancel()
        with suppress(asyncio.CancelledError):
            await page
        await pages.aclose()


async def test_snapshots_cancelled_mid_page_leave_storage_serving(
    database_factory: Callable[[], str],
) -> None:
    storage = open_storage(database_factory(), event_retention=0, pool_size=4)
    await storage.open()
    try:
        await cancel_snapshots(storage)
        assert await snapshot_size(storage) == BOOKS
    finally:
        await storage.close()


def open_handles(path: Path) -> int:
    """How many file descriptors this process holds on ``path``, as the kernel lists them.

    For a WAL file that is how many connections are open and have read: SQLite
    closes a connection's WAL handle with the connection (unlike the main file's,
    which it may keep for reuse), and every snapshot reads as it begins.
    """
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with suppress(OSError):  # the listing's own descriptor, closed already
            count += fd.readlink() == path
    return count


async def test_sqlite_closes_each_cancelled_snapshot_once_its_read_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "library.db"
    wal = path.with_name(path.name + "-wal")
    storage = SQLiteStorage(str(path), event_retention=0)
    await storage.open()
    try:
        # The writer's and the loop's connections, once both have used the file.
        assert await storage.get_book(1) is None
        idle = open_handles(wal)
        async with aclosing(storage.snapshot_pages(BOOKS)) as pages:
            await anext(pages)
            # The count sees a snapshot's connection while it is open.
            assert open_handles(wal) == idle + 1
        await until(lambda: open_handles(wal) == idle, "the finished snapshot's connection closed")
        await cancel_snapshots(storage)
        await until(lambda: open_handles(wal) == idle, "every snapshot connection closed")
    finally:
        await storage.close()
