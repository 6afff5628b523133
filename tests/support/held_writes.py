"""Holding every write of a server back from the outside, through its own database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path

import asyncpg

from server.domain.errors import Unavailable
from server.domain.models import Book


@asynccontextmanager
async def writes_held(database_url: str) -> AsyncIterator[None]:
    """While inside, no write of a server on ``database_url`` can commit.

    SQLite: another connection holds the write lock, so the server's writer waits
    in BEGIN IMMEDIATE (for at most its busy timeout, 5 s). PostgreSQL: another
    transaction holds the event-head row, which every write locks first (waiting, for at most 5 s).
    """
    if database_url.startswith("postgresql://"):
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute("SELECT revision FROM event_head FOR UPDATE")
                yield
        finally:
            await conn.close()
        return
    with write_lock_held(database_url):
        yield


@contextmanager
def write_lock_held(path: str | Path) -> Iterator[None]:
    """Another connection holds the SQLite file's write lock, as a busy process would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


def check_refused_past_a_queue_of_three(results: Sequence[object]) -> None:
    """Writes sent to a writer held with a queue bound of 3: the queued ones (and the one
    it may have taken already) written, every other refused as retryable."""
    written = [r for r in results if isinstance(r, Book)]
    refused = [r for r in results if isinstance(r, Unavailable)]
    assert 3 <= len(written) <= 4
    assert len(written) + len(refused) == len(results)
    assert all("retry shortly" in r.message for r in refused)
