"""SQLite's writer thread commits writes that arrive together as one batch, each undone alone."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.domain.errors import AlreadyExists
from server.domain.models import Book, NewBook
from server.storage.sqlite import SQLiteStorage
from tests.support.data import isbn13
from tests.support.held_writes import check_refused_past_a_queue_of_three
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


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What reaches the running loop's exception handler meanwhile ("never retrieved" and such)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


async def test_writes_whose_callers_went_away_are_done_and_fail_quietly(tmp_path: Path) -> None:
    # A reset stream cancels its handler mid-write: the write still happens,
    # and a failure nobody waits for any more is not reported as unhandled.
    path = tmp_path / "library.db"
    storage = SQLiteStorage(str(path), event_retention=0)
    await storage.open()
    with loop_errors() as unhandled:
        try:
            existing = await storage.create_book(
                NewBook("Old", "O", isbn13(), 2000), datetime.now(UTC)
            )
            head, done = await storage.head_revision(), storage.writer.stats.writes
            books = [("Blocked", isbn13()), ("Kept", isbn13()), ("Dup", existing.isbn)]
            with closing(sqlite3.connect(path, isolation_level=None)) as other:
                other.execute("BEGIN IMMEDIATE")
                writes = [
                    asyncio.ensure_future(
                        storage.create_book(NewBook(title, "A", isbn, 2000), datetime.now(UTC))
                    )
                    for title, isbn in books
                ]
                await until(lambda: storage.writer.queued == 2, "the writes behind the first")
                for write in writes:
                    write.cancel()
                other.execute("ROLLBACK")
            await until(lambda: storage.writer.stats.writes == done + 3, "the abandoned writes")
            events = await storage.events_after(head, 10)
        finally:
            await storage.close()
        # Their tracebacks hold on to the writes' futures: let those go.
        del writes, write
        gc.collect()
    assert [e.book.title for e in events] == ["Blocked", "Kept"]
    assert unhandled == []


async def test_writes_past_the_queue_bound_are_refused_as_retryable(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    storage = SQLiteStorage(str(path), event_retention=0, busy_timeout=30, max_queued_writes=3)
    await storage.open()
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            # Another process holds the write lock: the writer thread cannot drain its queue.
            other.execute("BEGIN IMMEDIATE")
            writes = [
                asyncio.ensure_future(
                    storage.create_book(NewBook(f"Q{i}", "A", isbn13(), 2000), datetime.now(UTC))
                )
                for i in range(10)
            ]
            await until(lambda: any(w.done() for w in writes), "a write past the bound refused")
            other.execute("ROLLBACK")
            results = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        await storage.close()
    check_refused_past_a_queue_of_three(results)
