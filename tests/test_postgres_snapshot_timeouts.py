"""PostgreSQL: a database that stops answering fails a snapshot as UNAVAILABLE, in bounded time.

A snapshot has a connection of its own (not a pooled one); connecting to it,
reading its pages and closing it are bounded by the storage's answer timeout,
so a stalled server can neither hang a watcher nor the shutdown that ends it.
The server is stalled for real: its processes are stopped with SIGSTOP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime

import asyncpg
import pytest

from server.domain.errors import Unavailable
from server.domain.models import NewBook
from server.storage.postgres import PostgresStorage
from tests.support.data import isbn13
from tests.support.pausing import paused
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

ANSWER_TIMEOUT = 0.5
# A bounded wait ends within the answer timeout, give or take a busy machine; a hang never does.
BOUND_SECONDS = 10 * ANSWER_TIMEOUT


@pytest.fixture
def database(postgres_cluster: PostgresCluster) -> str:
    """A fresh database's URL."""
    return postgres_cluster.create_database()


@pytest.fixture
async def storage(database: str) -> AsyncIterator[PostgresStorage]:
    """An open storage on ``database``, with a short answer timeout."""
    storage = PostgresStorage(
        database, event_retention=0, pool_size=2, answer_timeout=ANSWER_TIMEOUT
    )
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


async def add_books(storage: PostgresStorage, count: int) -> None:
    """Add ``count`` books."""
    for n in range(count):
        await storage.create_book(NewBook(f"B{n}", "K", isbn13(), 2000), datetime.now(UTC))


async def first_page_size(storage: PostgresStorage) -> int:
    """How many books the first page of a new snapshot holds."""
    async with aclosing(storage.snapshot_pages(10)) as pages:
        _, books = await anext(pages)
        return len(books)


async def test_a_snapshot_reports_a_server_that_accepts_no_connection(
    postgres_cluster: PostgresCluster, storage: PostgresStorage
) -> None:
    await add_books(storage, 1)
    # The postmaster takes each new connection; stopped, it leaves them unanswered.
    with paused(postgres_cluster.postmaster_pid()):
        async with asyncio.timeout(BOUND_SECONDS):
            with pytest.raises(Unavailable, match="retry"):
                await first_page_size(storage)
    assert await first_page_size(storage) == 1


async def test_a_snapshot_whose_server_stops_answering_fails_and_closes(
    database: str, storage: PostgresStorage
) -> None:
    await add_books(storage, 3)
    admin = await asyncpg.connect(database)
    try:
        pages = storage.snapshot_pages(1)
        await anext(pages)
        # The only connection of this database inside a transaction is the snapshot's.
        backend = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND state = 'idle in transaction'"
        )
        with paused(backend):
            async with asyncio.timeout(BOUND_SECONDS):
                with pytest.raises(Unavailable, match="retry"):
                    await anext(pages)
                # Closing does not wait on the stopped server either.
                await pages.aclose()
        # Continued, the backend finds its connection dropped and ends.
        async with asyncio.timeout(BOUND_SECONDS):
            while True:
                if not await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend
                ):
                    break
                await asyncio.sleep(0.05)
    finally:
        await admin.close()
    assert await first_page_size(storage) == 3
