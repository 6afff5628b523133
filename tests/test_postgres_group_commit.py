"""PostgreSQL's writer commits writes that arrive together as one batch, each undone alone.

Batches are made to form for real: another session holds the event-head row
(as another process's batch would), so the writer's first write waits for it
and the rest queue behind; once the head is free they go as one transaction.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import cycle

import asyncpg
import pytest

from server.domain.errors import AlreadyExists, FailedPrecondition, Unavailable
from server.domain.models import Book, BookFilter, NewBook
from server.storage.postgres import PostgresStorage
from tests.support.data import isbn13
from tests.support.held_writes import check_refused_past_a_queue_of_three, writes_held
from tests.support.postgres import PostgresCluster
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

WRITES = 20
DUPLICATES = (5, 11)
BROKEN = 15
# Two storages stand for two processes; each contends for every book.
BOOKS = 6
ROUNDS = 6
MEMBERS = 8


@pytest.fixture
async def url(postgres_cluster: PostgresCluster) -> str:
    """A fresh database's URL."""
    return postgres_cluster.create_database()


@pytest.fixture
async def storage(url: str) -> AsyncIterator[PostgresStorage]:
    """An open storage on ``url``."""
    storage = PostgresStorage(url, event_retention=0, pool_size=2)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


def _now() -> datetime:
    return datetime.now(UTC)


async def test_a_batch_commits_together_and_a_failing_write_fails_alone(
    url: str, storage: PostgresStorage
) -> None:
    existing = await storage.create_book(NewBook("Old", "O", isbn13(), 2000), _now())
    head = await storage.head_revision()
    books = [NewBook(f"B{i}", "A", isbn13(), 2000) for i in range(WRITES)]
    books[DUPLICATES[0]] = NewBook("Dup", "A", books[DUPLICATES[0] - 1].isbn, 2000)
    books[DUPLICATES[1]] = NewBook("Dup", "A", existing.isbn, 2000)
    # PostgreSQL refuses NUL in text: a statement error, which aborts the transaction
    # unless the writer rolls back to the write's own savepoint.
    books[BROKEN] = NewBook("Broken\x00", "A", isbn13(), 2000)
    writer = storage.writer
    async with writes_held(url):
        writes = [asyncio.ensure_future(storage.create_book(b, _now())) for b in books]
        await until(lambda: writer.queued == WRITES - 1, "every write but the first queued")
    results = await asyncio.gather(*writes, return_exceptions=True)
    events = await storage.events_after(head, 100)

    # The first write waited for the head; all the others joined its batch.
    assert writer.stats.largest_batch == WRITES
    assert [i for i, r in enumerate(results) if isinstance(r, AlreadyExists)] == list(DUPLICATES)
    assert isinstance(results[BROKEN], asyncpg.CharacterNotInRepertoireError)
    created = [r for r in results if isinstance(r, Book)]
    assert len(created) == WRITES - len(DUPLICATES) - 1
    # The others are all there, with one event each, numbered in the order they were sent.
    assert [(e.revision, e.book) for e in events] == [
        (head + 1 + n, book) for n, book in enumerate(created)
    ]
    stored = await storage.list_books(BookFilter(), 0, 100)
    assert sorted(b.id for b in stored) == sorted([existing.id, *(b.id for b in created)])


async def test_writes_past_the_queue_bound_are_refused_as_retryable(url: str) -> None:
    storage = PostgresStorage(url, event_retention=0, pool_size=2, max_queued_writes=3)
    await storage.open()
    try:
        async with writes_held(url):
            # The writer's first write waits for the head; the queue fills behind it.
            writes = [
                asyncio.ensure_future(
                    storage.create_book(NewBook(f"Q{i}", "A", isbn13(), 2000), _now())
                )
                for i in range(10)
            ]
            await until(lambda: any(w.done() for w in writes), "a write past the bound refused")
        results = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        await storage.close()
    check_refused_past_a_queue_of_three(results)


async def test_two_processes_on_the_same_books_never_deadlock_and_check_out_once(
    url: str,
) -> None:
    storages = [PostgresStorage(url, event_retention=0, pool_size=2) for _ in range(2)]
    for s in storages:
        await s.open()
    try:
        books = [
            await storages[0].create_book(NewBook(f"C{i}", "A", isbn13(), 2000), _now())
            for i in range(BOOKS)
        ]
        head = await storages[0].head_revision()
        seen: list[int] = []
        # Where the follower may stop: known once the writing is done.
        end = [float("inf")]

        async def follow() -> None:
            last = head
            while last < end[0]:
                events = await storages[1].events_after(last, 100)
                seen.extend(e.revision for e in events)
                if events:
                    last = events[-1].revision
                else:
                    await storages[1].wait_for_events(last, 1.0)

        async def attempt(kind: str, n: int, book: Book) -> str:
            storage = storages[(n // BOOKS) % 2]
            try:
                if kind == "checkout":
                    due = _now() + timedelta(days=7)
                    await storage.checkout_book(book.id, f"m{n % MEMBERS}", _now(), due)
                else:
                    await storage.return_book(book.id, None, _now())
            except FailedPrecondition:
                return "refused"
            return "done"

        async def contend(kind: str | None = None) -> Counter[str]:
            # Every book, each asked MEMBERS times, from both storages, interleaved; with
            # no ``kind``, checkouts and returns mixed.
            calls = [
                attempt(kind or ("checkout", "return")[n % 2], n, b)
                for n, b in zip(range(BOOKS * MEMBERS), cycle(books))
            ]
            return Counter(await asyncio.gather(*calls))

        async with asyncio.timeout(60):
            following = asyncio.create_task(follow())
            for _ in range(ROUNDS):
                # Exactly one checkout, and then exactly one return, of each book wins.
                assert await contend("checkout") == {
                    "done": BOOKS,
                    "refused": BOOKS * (MEMBERS - 1),
                }
                assert await contend("return") == {"done": BOOKS, "refused": BOOKS * (MEMBERS - 1)}
            mixed = [await contend() for _ in range(ROUNDS)]
            end[0] = await storages[0].head_revision()
            await following
        loans = await storages[1].list_loans(None, False, 0, 1000)
        available = {b.id: b.available for b in await storages[0].list_books(BookFilter(), 0, 100)}
        events = await storages[0].events_after(head, 1000)
        batches = [s.writer.stats.largest_batch for s in storages]
    finally:
        for s in storages:
            await s.close()
    # Both processes batched, and the log was followed gapless, in commit order.
    assert min(batches) > 1
    done = sum(c["done"] for c in mixed) + 2 * ROUNDS * BOOKS
    assert seen == list(range(head + 1, head + done + 1))
    # Each book's events alternate, lent, returned, lent, ...: no checkout ever saw a
    # book lent, no return one not lent; one loan per checkout, all but the open ones closed.
    for book in books:
        states = [e.book.available for e in events if e.book.id == book.id]
        assert states == [n % 2 == 1 for n in range(len(states))]
        lent = [loan for loan in loans if loan.book_id == book.id]
        assert len(lent) == (len(states) + 1) // 2
        # Open exactly when its last event lent it, and so the book says now.
        on_loan = [loan for loan in lent if loan.return_time is None]
        assert len(on_loan) == len(states) % 2
        assert available[book.id] == (not on_loan)


async def test_an_outage_mid_batch_fails_every_write_of_it_and_the_writer_recovers(
    url: str, storage: PostgresStorage
) -> None:
    admin = await asyncpg.connect(url)
    blocker = await asyncpg.connect(url)
    try:
        head = await storage.head_revision()
        contested = isbn13()
        # Another session's uncommitted book with this ISBN: inserting it again waits
        # for that session, which keeps the batch open in the middle of its writes.
        await blocker.execute("BEGIN")
        await blocker.execute(
            "INSERT INTO books (title, author, isbn, published_year, search_text,"
            " create_time, update_time) VALUES ('X', 'X', $1, 2000, 'x', 0, 0)",
            contested,
        )
        books = [NewBook("First", "A", isbn13(), 2000), NewBook("Waits", "A", contested, 2000)]
        books += [NewBook(f"Then {i}", "A", isbn13(), 2000) for i in range(3)]
        async with writes_held(url):
            writes = [asyncio.ensure_future(storage.create_book(b, _now())) for b in books]
            await until(lambda: storage.writer.queued == len(books) - 1, "the writes queued")
        # The first write is done (uncommitted); the second waits for the blocker.
        writer_pid = await _until(
            admin,
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'INSERT INTO books%'",
        )
        await admin.execute("SELECT pg_terminate_backend($1)", writer_pid)
        results = await asyncio.gather(*writes, return_exceptions=True)
        await blocker.execute("ROLLBACK")

        assert [type(r) for r in results] == [Unavailable] * len(books)
        assert all("retry" in r.message for r in results if isinstance(r, Unavailable))
        # Nothing of the batch was kept, and the next write is committed on a new connection.
        assert await storage.head_revision() == head
        assert await storage.list_books(BookFilter(), 0, 100) == []
        after = await storage.create_book(NewBook("After", "A", isbn13(), 2000), _now())
        assert [e.book for e in await storage.events_after(head, 10)] == [after]
    finally:
        await blocker.close()
        await admin.close()


async def _until(admin: asyncpg.Connection, query: str) -> int:
    """The backend id ``query`` finds, once it finds one."""
    async with asyncio.timeout(10):
        while True:
            pid = await admin.fetchval(query)
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.02)


async def test_a_commit_cut_off_unanswered_is_not_acknowledged(
    url: str, storage: PostgresStorage
) -> None:
    admin = await asyncpg.connect(url)
    try:
        head = await storage.head_revision()
        # A deferred trigger runs inside COMMIT: there it waits, so the connection can be
        # cut while the COMMIT is sent and not yet answered.
        await admin.execute(
            "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;"
            " CREATE CONSTRAINT TRIGGER stall_commit AFTER INSERT ON events"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stall()"
        )
        write = asyncio.ensure_future(
            storage.create_book(NewBook("Cut", "A", isbn13(), 2000), _now())
        )
        pid = await _until(admin, "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
        assert "COMMIT" in await admin.fetchval(
            "SELECT query FROM pg_stat_activity WHERE pid = $1", pid
        )
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(Unavailable, match="retry"):
            await write
        await admin.execute("DROP TRIGGER stall_commit ON events")
        assert await storage.head_revision() == head
        assert await storage.list_books(BookFilter(), 0, 10) == []
        after = await storage.create_book(NewBook("After", "A", isbn13(), 2000), _now())
        assert [e.book for e in await storage.events_after(head, 10)] == [after]
    finally:
        await admin.close()
