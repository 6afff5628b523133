"""Snapshots whose reader goes away mid-page (a reset stream) end cleanly on each backend.

SQLite reads snapshot pages on threads; a cancelled caller once closed the
connection under the running read and the process died with SIGSEGV (which
takes pytest down with it here).
"""

from __future__ import annotations

import asyncio
import sqlite3
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


def is_open(db: sqlite3.Connection) -> bool:
    """Whether ``db`` has not been closed yet."""
    try:
        db.total_changes  # noqa: B018 (raises once closed)
    except sqlite3.ProgrammingError:
        return False
    return True


async def test_sqlite_closes_each_cancelled_snapshot_once_its_read_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SQLiteStorage(str(tmp_path / "library.db"), event_retention=0)
    await storage.open()
    readers: list[sqlite3.Connection] = []
    connect = storage._connect

    def recording_connect() -> sqlite3.Connection:
        readers.append(connect())
        return readers[-1]

    monkeypatch.setattr(storage, "_connect", recording_connect)
    try:
        await cancel_snapshots(storage)
        assert readers
        await until(lambda: not any(map(is_open, readers)), "every snapshot connection closed")
    finally:
        await storage.close()
