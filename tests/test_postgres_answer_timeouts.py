"""PostgreSQL: a database that stops answering fails reads, writes and waits in bounded time.

Every wait on the server is bounded by the storage's answer timeout: a pooled
read's statement, waiting for a pooled connection (connecting included), the
writer's batch, and the listening connection, which is replaced when it stops
answering. Each ends as UNAVAILABLE ("retry"), and once the server answers
again so does the storage. The server is stalled for real: the backend serving
the call, or the postmaster, is stopped with SIGSTOP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from server.domain.errors import Unavailable
from server.domain.models import Book, BookFilter, NewBook
from server.storage.pg_wakeup import APPLICATION_NAME as LISTENER_NAME
from server.storage.postgres import READER_NAME, WRITER_NAME, PostgresStorage
from tests.support.data import isbn13
from tests.support.pausing import paused
from tests.support.postgres import PostgresCluster
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

ANSWER_TIMEOUT = 0.5
# A bounded wait ends within a few answer timeouts, give or take a busy machine; a hang never.
BOUND_SECONDS = 10 * ANSWER_TIMEOUT
# Far past the bound: a wait this long for a wake-up would mean it never came.
LONG_WAIT_SECONDS = 60.0


@pytest.fixture
def database(postgres_cluster: PostgresCluster) -> str:
    """A fresh database's URL."""
    return postgres_cluster.create_database()


@pytest.fixture
async def admin(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to find and end the storage's backends."""
    conn = await asyncpg.connect(database)
    try:
        yield conn
    finally:
        await conn.close()


async def open_storage(database: str) -> PostgresStorage:
    """An open storage with one pooled connection and a short answer timeout."""
    storage = PostgresStorage(
        database, event_retention=0, pool_size=1, answer_timeout=ANSWER_TIMEOUT
    )
    await storage.open()
    return storage


@pytest.fixture
async def storage(database: str) -> AsyncIterator[PostgresStorage]:
    """An open storage on ``database``."""
    storage = await open_storage(database)
    try:
        yield storage
    finally:
        await storage.close()


async def new_book(storage: PostgresStorage) -> Book:
    """A book created through the writer."""
    return await storage.create_book(NewBook("T", "A", isbn13(), 2000), datetime.now(UTC))


async def backend(admin: asyncpg.Connection, name: str) -> int:
    """The pid of the one backend of this database named ``name``."""
    pids = await admin.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1",
        name,
    )
    assert len(pids) == 1, f"{len(pids)} backends named {name}"
    return int(pids[0]["pid"])


async def unavailable_in_bounded_time(call: Awaitable[object]) -> None:
    """``call`` fails as Unavailable, well before a hang would end."""
    async with asyncio.timeout(BOUND_SECONDS):
        with pytest.raises(Unavailable, match="retry"):
            await call


Read = Callable[[PostgresStorage, Book], Awaitable[object]]

READS: dict[str, Read] = {
    "get_book": lambda storage, book: storage.get_book(book.id),
    "list_books": lambda storage, _: storage.list_books(BookFilter(), 0, 10),
    "search": lambda storage, _: storage.list_books(BookFilter(query="T"), 0, 10),
    "count_books": lambda storage, _: storage.count_books(BookFilter()),
    "member_by_token_hash": lambda storage, _: storage.member_by_token_hash("0" * 64),
    "head_revision": lambda storage, _: storage.head_revision(),
    "events_after": lambda storage, _: storage.events_after(0, 10),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
async def test_a_read_whose_backend_stops_answering_is_unavailable(
    admin: asyncpg.Connection, storage: PostgresStorage, read: Read
) -> None:
    book = await new_book(storage)
    with paused(await backend(admin, READER_NAME)):
        await unavailable_in_bounded_time(read(storage, book))
    # The stalled connection was dropped, not lent again: the next read gets a new one.
    assert await storage.get_book(book.id) == book
    await read(storage, book)


async def test_waiting_for_a_connection_from_a_server_that_accepts_none_is_unavailable(
    postgres_cluster: PostgresCluster, admin: asyncpg.Connection, storage: PostgresStorage
) -> None:
    book = await new_book(storage)
    reader = await backend(admin, READER_NAME)
    with paused(postgres_cluster.postmaster_pid()):
        # The pool's one connection ends: the next read has to connect, which the
        # stopped postmaster leaves unanswered.
        await admin.execute("SELECT pg_terminate_backend($1)", reader)
        await until(lambda: storage.pool_usage == (0, 0), "the pool to see its connection end")
        await unavailable_in_bounded_time(storage.get_book(book.id))
    assert await storage.get_book(book.id) == book


async def test_a_batch_whose_backend_stops_answering_fails_whole_and_the_writer_recovers(
    admin: asyncpg.Connection, storage: PostgresStorage
) -> None:
    await new_book(storage)
    with paused(await backend(admin, WRITER_NAME)):
        async with asyncio.timeout(BOUND_SECONDS):
            outcomes = await asyncio.gather(
                *(new_book(storage) for _ in range(5)), return_exceptions=True
            )
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
    # Continued, the old backend finds its connection dropped and rolls back, freeing
    # the event head for the writer's new connection.
    async with asyncio.timeout(BOUND_SECONDS):
        while True:
            try:
                await new_book(storage)
                break
            except Unavailable:
                continue
    # None of the stalled batch was kept: the first book and the one after.
    assert await storage.count_books(BookFilter()) == 2
    assert storage.writer.stats.writes >= 2


async def test_a_batch_stalled_holding_the_event_head_fails_whole_and_blocks_no_one_for_long(
    database: str, admin: asyncpg.Connection, storage: PostgresStorage
) -> None:
    await new_book(storage)
    writer = await backend(admin, WRITER_NAME)
    other = await open_storage(database)  # another process's, on the same database
    books_locked = admin.transaction()
    try:
        # The batch begins (the event head locked) and its first insert waits on the
        # test's table lock: the backend is stopped mid-batch, then the lock released.
        await books_locked.start()
        await admin.execute("LOCK TABLE books IN SHARE MODE")
        writes = asyncio.gather(*(new_book(storage) for _ in range(3)), return_exceptions=True)
        await until_waiting_for_a_lock(admin, writer)
        with paused(writer):
            await books_locked.commit()
            async with asyncio.timeout(BOUND_SECONDS):
                outcomes = await writes
            assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
            # Another process's batch waits for the head the stalled one holds, not for ever.
            await unavailable_in_bounded_time(new_book(other))
        # Continued, the old backend finds its connection dropped and rolls back.
        async with asyncio.timeout(BOUND_SECONDS):
            while True:
                try:
                    await new_book(other)
                    break
                except Unavailable:
                    continue
        await new_book(storage)
        assert await storage.count_books(BookFilter()) == 3
    finally:
        if admin.is_in_transaction():
            await books_locked.rollback()
        await other.close()


async def until_waiting_for_a_lock(admin: asyncpg.Connection, pid: int) -> None:
    """Return once backend ``pid`` waits for a lock."""
    async with asyncio.timeout(BOUND_SECONDS):
        while True:
            if await admin.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return
            await asyncio.sleep(0.01)


async def test_a_listener_that_stops_answering_is_replaced_and_wakes_its_waiters(
    database: str, admin: asyncpg.Connection, storage: PostgresStorage
) -> None:
    listener = await backend(admin, LISTENER_NAME)
    other = await open_storage(database)  # another process's, on the same database
    try:
        with paused(listener):
            # Nothing commits: only the listener's replacement wakes this waiter (to
            # re-read the log, for notifications may be lost), long before its wait ends.
            head = storage.committed_head
            async with asyncio.timeout(BOUND_SECONDS):
                await storage.wait_for_events(head, LONG_WAIT_SECONDS)
            # The new listening connection hears the other process's commits, while
            # the old one is still stopped (those just before it listened are missed).
            async with asyncio.timeout(BOUND_SECONDS):
                while storage.committed_head == head:
                    await new_book(other)
                    await storage.wait_for_events(head, ANSWER_TIMEOUT)
            assert storage.committed_head <= other.committed_head
    finally:
        await other.close()
