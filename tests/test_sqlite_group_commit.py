"""SQLite's writer thread commits writes that arrive together as one batch, each undone alone."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.domain.errors import AlreadyExists
from server.domain.models import Book, NewBook
from server.storage.sqlite import SQLiteStorage
from tests.support.data import isbn13
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

WRITES = 20
DUPLICATES = (5, 11, 17)


async def test_a_batch_commits_together_and_a_failing_write_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    storage = SQLiteStorage(str(path), event_retention=0)
    await storage.open()
    try:
        existing = await storage.create_book(NewBook("Old", "O", isbn13(), 2000), datetime.now(UTC))
        head = await storage.head_revision()
        isbns = [isbn13() for _ in range(WRITES)]
        for i in DUPLICATES:
            isbns[i] = isbns[i - 1] if i != DUPLICATES[-1] else existing.isbn
        writer = storage.writer
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            # Another process holds the write lock, so the writes pile up behind the first.
            other.execute("BEGIN IMMEDIATE")
            writes = [
                asyncio.ensure_future(
                    storage.create_book(NewBook(f"B{i}", "A", isbn, 2000), datetime.now(UTC))
                )
                for i, isbn in enumerate(isbns)
            ]
            await until(lambda: writer.queued == WRITES - 1, "every write but the first queued")
            other.execute("ROLLBACK")
            results = await asyncio.gather(*writes, return_exceptions=True)
        events = await storage.events_after(head, 100)
    finally:
        await storage.close()

    # The first write waited for the lock; all the others joined its batch.
    assert writer.stats.largest_batch == WRITES
    refused = [i for i, r in enumerate(results) if isinstance(r, AlreadyExists)]
    assert refused == list(DUPLICATES)
    created = [r for r in results if isinstance(r, Book)]
    assert len(created) == WRITES - len(DUPLICATES)
    # The others are all there, with one event each, in the order they were sent.
    assert [(e.revision, e.book) for e in events] == [
        (head + 1 + n, book) for n, book in enumerate(created)
    ]
