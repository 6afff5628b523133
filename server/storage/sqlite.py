"""The embedded default: SQLite in WAL mode; reads inline, writes on one writer thread.

A primary-key read costs a few microseconds, far less than a hop to a thread
pool, so reads run on the event loop (WAL readers never wait for writers).
Writes go to the process's one writer thread (``sqlite_writer``), which
group-commits them under SQLite's write lock (BEGIN IMMEDIATE): that lock is
what serializes checkouts and keeps revisions in commit order, also across
processes, and it is waited for off the loop.

Watchers in this process are woken at once by its own writes; for other
processes' writes one poller task reads the head while anyone waits.
A write lock held elsewhere past the busy timeout surfaces as Unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from server.domain import search
from server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from server.domain.models import (
    Book,
    BookEvent,
    BookFilter,
    EventType,
    Loan,
    Member,
    NewBook,
    Role,
)
from server.domain.storage import SnapshotPages
from server.storage import migrations, records
from server.storage.head import Head
from server.storage.outages import unavailable_on
from server.storage.sql import AVAILABLE, BOOK_COLUMNS, LOAN_COLUMNS, MEMBER_COLUMNS
from server.storage.sqlite_reader import ThreadedReader
from server.storage.sqlite_writer import Operation, Writer

log = logging.getLogger("library.storage")

POLLER_TASK_NAME = "library-sqlite-head-poller"
"""The name of the task that looks for other processes' writes."""

WRITER_THREAD_NAME = "library-sqlite-writer"
"""The name of the thread that runs every write of this process."""

SNAPSHOT_THREAD_NAME = "library-sqlite-snapshot"
"""The name prefix of the threads that read WatchBooks snapshots."""

R = TypeVar("R")

_BUSY_CODES = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
_INSERT_MEMBER = (
    "INSERT INTO members (id, name, role, token_hash, create_time) VALUES (?, ?, ?, ?, ?)"
)
# How long a statement waits for a write lock held by another connection.
_BUSY_TIMEOUT_SECONDS = 5.0
# Writers in other processes cannot wake this one, so the poller looks at
# the log this often while anyone waits.
_POLL_SECONDS = 0.1
_WAL_ATTEMPTS = 100
_WAL_RETRY_SECONDS = 0.05
# Snapshot pages of all watchers take turns on this many threads.
_SNAPSHOT_THREADS = 4


def _is_busy(error: Exception) -> bool:
    # A lock held elsewhere past the busy timeout: retrying may work.
    return (
        isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode & 0xFF in _BUSY_CODES
    )


_busy_is_unavailable = unavailable_on(_is_busy, "the database is busy; retry shortly")


class SQLiteStorage:
    """Storage in one SQLite file; several processes may share it.

    ``busy_timeout`` is how many seconds a statement waits for another
    connection's lock before the call fails as Unavailable.
    """

    def __init__(
        self,
        path: str,
        *,
        event_retention: int,
        busy_timeout: float = _BUSY_TIMEOUT_SECONDS,
        max_queued_writes: int = 10_000,
    ) -> None:
        self._path = path
        self._max_queued_writes = max_queued_writes
        self._retention = event_retention
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._writer: Writer | None = None
        self._known_head = Head()
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None
        self._snapshot_threads: ThreadPoolExecutor | None = None

    @_busy_is_unavailable
    async def open(self) -> None:
        """Open the file (creating it) and migrate it to the latest schema."""
        self._snapshot_threads = ThreadPoolExecutor(
            _SNAPSHOT_THREADS, thread_name_prefix=SNAPSHOT_THREAD_NAME
        )
        writing = self._connect()
        await _switch_to_wal(writing)
        # FULL: a committed loan survives a power cut, not only a crash.
        writing.execute("PRAGMA synchronous = FULL")
        self._writer = Writer(
            writing, self._known_head.advance, WRITER_THREAD_NAME, self._max_queued_writes
        )
        self._writer.start()
        self._db = self._connect()
        try:
            await self._write(_migrate)
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout * 1000)}")
        return db

    async def close(self) -> None:
        """Stop polling, finish queued writes and close the connections; safe to call twice."""
        await self._stop_poller()
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()
            writer.close()
        if self._db is not None:
            self._db.close()
            self._db = None
        threads, self._snapshot_threads = self._snapshot_threads, None
        if threads is not None:
            # Pages being read finish on their own; their readers close behind them.
            threads.shutdown(wait=False, cancel_futures=True)

    @property
    def writer(self) -> Writer:
        """The thread running this process's writes (its stats and queue, for tests and metrics)."""
        if self._writer is None:
            raise RuntimeError("storage is not open")
        return self._writer

    async def _write(self, operation: Operation[R]) -> R:
        if self._writer is None:
            raise RuntimeError("storage is not open")
        return await self._writer.write(operation)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("storage is not open")
        return self._db

    @_busy_is_unavailable
    async def signing_key(self) -> bytes:
        """The page-token key, created with the database."""
        (key,) = self._conn.execute("SELECT value FROM meta WHERE key = 'signing_key'").fetchone()
        return bytes(key)

    @_busy_is_unavailable
    async def get_book(self, book_id: int) -> Book | None:
        """The book, or None."""
        return _book_by_id(self._conn, book_id)

    @_busy_is_unavailable
    async def list_books(self, where: BookFilter, after_id: int, limit: int) -> Sequence[Book]:
        """Matching books after ``after_id``, by id."""
        condition, params = _filter_sql(where)
        rows = self._conn.execute(
            f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id > ? {condition} ORDER BY b.id LIMIT ?",
            (after_id, *params, limit),
        )
        return [records.book_from_row(r) for r in rows]

    @_busy_is_unavailable
    async def count_books(self, where: BookFilter) -> int:
        """How many books match."""
        condition, params = _filter_sql(where)
        (count,) = self._conn.execute(
            f"SELECT count(*) FROM books b WHERE 1 {condition}", params
        ).fetchone()
        return int(count)

    @_busy_is_unavailable
    async def create_book(self, book: NewBook, now: datetime) -> Book:
        """Insert the book and its CREATED event."""
        stamp = records.to_micros(now)

        def create(tx: sqlite3.Connection) -> tuple[Book, int]:
            try:
                cursor = tx.execute(
                    "INSERT INTO books (title, author, isbn, published_year, search_text,"
                    " create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        book.title,
                        book.author,
                        book.isbn,
                        book.published_year,
                        search.search_text(book.title, book.author, book.isbn),
                        stamp,
                        stamp,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"a book with isbn {book.isbn} exists already") from None
            created = _require_book(tx, cursor.lastrowid or 0)
            return created, self._append(tx, EventType.CREATED, created, stamp)

        return await self._write(create)

    @_busy_is_unavailable
    async def delete_book(self, book_id: int, now: datetime) -> Book:
        """Delete the book unless it is on loan."""

        def delete(tx: sqlite3.Connection) -> tuple[Book, int]:
            book = _require_book(tx, book_id)
            if not book.available:
                raise FailedPrecondition(
                    f"book {book_id} is on loan; it can be deleted once returned"
                )
            tx.execute("DELETE FROM books WHERE id = ?", (book_id,))
            return book, self._append(tx, EventType.DELETED, book, records.to_micros(now))

        return await self._write(delete)

    @_busy_is_unavailable
    async def checkout_book(
        self, book_id: int, member_id: str, now: datetime, due: datetime
    ) -> tuple[Book, Loan]:
        """Open a loan; the partial unique index refuses a second open one."""
        stamp = records.to_micros(now)

        def checkout(tx: sqlite3.Connection) -> tuple[tuple[Book, Loan], int]:
            _require_book(tx, book_id)
            try:
                cursor = tx.execute(
                    "INSERT INTO loans (book_id, member_id, checkout_time, due_time)"
                    " VALUES (?, ?, ?, ?)",
                    (book_id, member_id, stamp, records.to_micros(due)),
                )
            except sqlite3.IntegrityError:
                raise FailedPrecondition(
                    f"book {book_id} is not available: it is on loan"
                ) from None
            book, revision = self._updated(tx, book_id, stamp)
            return (book, _loan_by_id(tx, cursor.lastrowid or 0)), revision

        return await self._write(checkout)

    @_busy_is_unavailable
    async def return_book(
        self, book_id: int, borrower: str | None, now: datetime
    ) -> tuple[Book, Loan]:
        """Close the book's open loan."""
        stamp = records.to_micros(now)

        def give_back(tx: sqlite3.Connection) -> tuple[tuple[Book, Loan], int]:
            _require_book(tx, book_id)
            row = tx.execute(
                f"SELECT {LOAN_COLUMNS} FROM loans WHERE book_id = ? AND return_time IS NULL",
                (book_id,),
            ).fetchone()
            if row is None:
                raise FailedPrecondition(f"book {book_id} is not on loan")
            open_loan = records.loan_from_row(row)
            if borrower is not None and open_loan.member_id != borrower:
                raise PermissionDenied(f"book {book_id} is on loan to someone else")
            tx.execute("UPDATE loans SET return_time = ? WHERE id = ?", (stamp, open_loan.id))
            book, revision = self._updated(tx, book_id, stamp)
            return (book, _loan_by_id(tx, open_loan.id)), revision

        return await self._write(give_back)

    @_busy_is_unavailable
    async def list_loans(
        self, member_id: str | None, active_only: bool, after_id: int, limit: int
    ) -> Sequence[Loan]:
        """Loans after ``after_id``, by id."""
        sql = f"SELECT {LOAN_COLUMNS} FROM loans WHERE id > ?"
        params: list[Any] = [after_id]
        if member_id is not None:
            sql += " AND member_id = ?"
            params.append(member_id)
        if active_only:
            sql += " AND return_time IS NULL"
        rows = self._conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit))
        return [records.loan_from_row(r) for r in rows]

    @_busy_is_unavailable
    async def create_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Insert a member with a fresh id."""
        member_id = str(uuid.uuid4())

        def create(tx: sqlite3.Connection) -> tuple[Member, int]:
            try:
                tx.execute(
                    _INSERT_MEMBER,
                    (member_id, name, int(role), token_hash, records.to_micros(now)),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"a member named {name!r} exists already") from None
            return _member(tx, "id = ?", member_id), 0

        return await self._write(create)

    @_busy_is_unavailable
    async def put_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Create ``name`` or give it this role and token."""

        def put(tx: sqlite3.Connection) -> tuple[Member, int]:
            tx.execute(
                _INSERT_MEMBER + " ON CONFLICT (name) DO UPDATE"
                " SET role = excluded.role, token_hash = excluded.token_hash",
                (str(uuid.uuid4()), name, int(role), token_hash, records.to_micros(now)),
            )
            return _member(tx, "name = ?", name), 0

        return await self._write(put)

    @_busy_is_unavailable
    async def set_token_hash(self, name: str, token_hash: str) -> Member | None:
        """Replace the member's token hash."""

        def replace(tx: sqlite3.Connection) -> tuple[Member | None, int]:
            row = tx.execute(
                f"UPDATE members SET token_hash = ? WHERE name = ? RETURNING {MEMBER_COLUMNS}",
                (token_hash, name),
            ).fetchone()
            return (None if row is None else records.member_from_row(row)), 0

        return await self._write(replace)

    @_busy_is_unavailable
    async def member_by_token_hash(self, token_hash: str) -> Member | None:
        """The token's member, or None."""
        row = self._conn.execute(
            f"SELECT {MEMBER_COLUMNS} FROM members WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else records.member_from_row(row)

    @property
    def committed_head(self) -> int:
        """Its own commits at once; other processes' as the head poller sees them."""
        return self._known_head.head

    @property
    def pool_usage(self) -> None:
        """None: one write connection on its thread, reads on the loop's own."""
        return None

    @_busy_is_unavailable
    async def head_revision(self) -> int:
        """The newest committed revision."""
        return _log_head(self._conn)

    async def snapshot_pages(self, page_size: int) -> SnapshotPages:
        """Pages of one read transaction on a connection of its own, read on a thread."""
        if self._snapshot_threads is None:
            raise RuntimeError("storage is not open")
        reader = ThreadedReader(self._connect, self._snapshot_threads)
        try:
            head = await reader.run(_begin_snapshot)
            after = 0
            while True:
                books = await reader.run(partial(_books_after, after_id=after, limit=page_size))
                yield head, books
                if len(books) < page_size:
                    return
                after = books[-1].id
        finally:
            reader.close()

    @_busy_is_unavailable
    async def events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        """Events after ``revision``; OutOfRange when the log cannot continue from there."""
        rows = self._conn.execute(
            "SELECT revision, type, book FROM events WHERE revision > ? ORDER BY revision LIMIT ?",
            (revision, limit),
        ).fetchall()
        # Revisions have no gaps, so only a batch that does not start right
        # after ``revision`` needs the bounds checked.
        if not rows or rows[0][0] != revision + 1:
            db = self._conn
            db.execute("BEGIN")
            try:
                head, floor = _log_head(db), _pruned_through(db)
            finally:
                db.execute("COMMIT")
            records.check_resume_point(revision, head, floor)
        return [records.event_from_row(*r) for r in rows]

    @_busy_is_unavailable
    async def wait_for_events(self, revision: int, max_wait: float) -> None:
        """Wake on a local write at once, on other processes' writes within a poll interval."""
        if self._poller is None:
            # Nobody has been watching the head: catch up before comparing.
            self._known_head.advance(_log_head(self._conn))
        if self._known_head.head > revision:
            return
        self._waiters += 1
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name=POLLER_TASK_NAME)
        try:
            await self._known_head.wait_past(revision, max_wait)
        finally:
            self._waiters -= 1
            if not self._waiters and self._poller is not None:
                self._poller.cancel()
                self._poller = None

    async def _poll(self) -> None:
        """Read the head for all of this process's waiters, however many there are."""
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            try:
                self._known_head.advance(_log_head(self._conn))
            except sqlite3.Error as e:
                # Waiters still re-check the log by themselves after their max_wait.
                log.warning("cannot read the event log head: %s", e)

    async def _stop_poller(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with suppress(asyncio.CancelledError):
                await poller

    def _updated(self, tx: sqlite3.Connection, book_id: int, stamp: int) -> tuple[Book, int]:
        """Stamp the book as changed and append its UPDATED event; returns both."""
        tx.execute("UPDATE books SET update_time = ? WHERE id = ?", (stamp, book_id))
        book = _require_book(tx, book_id)
        return book, self._append(tx, EventType.UPDATED, book, stamp)

    def _append(self, tx: sqlite3.Connection, event_type: EventType, book: Book, stamp: int) -> int:
        """Append the event; returns its revision."""
        cursor = tx.execute(
            "INSERT INTO events (type, book, create_time) VALUES (?, ?, ?)",
            (int(event_type), records.book_to_json(book), stamp),
        )
        revision = cursor.lastrowid or 0
        floor = records.prune_floor(revision, self._retention)
        if floor is not None:
            tx.execute("DELETE FROM events WHERE revision <= ?", (floor,))
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('pruned_through', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (floor,),
            )
        return revision


async def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Turn on WAL; processes opening a new file at once may collide, so retry.

    SQLite answers SQLITE_BUSY at once here, without waiting for the busy
    timeout, when two connections try the switch together.
    """
    for _ in range(_WAL_ATTEMPTS - 1):
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if not _is_busy(e):
                raise
            await asyncio.sleep(_WAL_RETRY_SECONDS)
    db.execute("PRAGMA journal_mode = WAL")


def _migrate(tx: sqlite3.Connection) -> tuple[None, int]:
    """Apply pending migrations and make sure the page-token key exists."""
    tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
    applied = {v for (v,) in tx.execute("SELECT version FROM schema_migrations")}
    for migration in migrations.load("sqlite"):
        if migration.version not in applied:
            for statement in migration.statements:
                tx.execute(statement)
            tx.execute("INSERT INTO schema_migrations VALUES (?)", (migration.version,))
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('signing_key', ?)",
        (secrets.token_bytes(32),),
    )
    return None, 0


def _filter_sql(where: BookFilter) -> tuple[str, tuple[Any, ...]]:
    condition, params = "", tuple[str, ...]()
    needles = search.needles(where.query)
    if needles is not None:
        text, isbn = needles
        if isbn is None:
            condition += " AND instr(b.search_text, ?) > 0"
            params = (text,)
        else:
            condition += " AND (instr(b.search_text, ?) > 0 OR instr(b.isbn, ?) > 0)"
            params = (text, isbn)
    if where.available_only:
        condition += f" AND {AVAILABLE}"
    return condition, params


def _book_by_id(db: sqlite3.Connection, book_id: int) -> Book | None:
    row = db.execute(f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id = ?", (book_id,)).fetchone()
    return None if row is None else records.book_from_row(row)


def _require_book(db: sqlite3.Connection, book_id: int) -> Book:
    book = _book_by_id(db, book_id)
    if book is None:
        raise NotFound(f"book {book_id} does not exist")
    return book


def _loan_by_id(db: sqlite3.Connection, loan_id: int) -> Loan:
    row = db.execute(f"SELECT {LOAN_COLUMNS} FROM loans WHERE id = ?", (loan_id,)).fetchone()
    return records.loan_from_row(row)


def _member(db: sqlite3.Connection, condition: str, value: str) -> Member:
    row = db.execute(f"SELECT {MEMBER_COLUMNS} FROM members WHERE {condition}", (value,)).fetchone()
    return records.member_from_row(row)


def _begin_snapshot(db: sqlite3.Connection) -> int:
    """Start a read transaction and return the head it sees; later reads see the same state."""
    db.execute("BEGIN")
    return _log_head(db)


def _books_after(db: sqlite3.Connection, after_id: int, limit: int) -> list[Book]:
    rows = db.execute(
        f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id > ? ORDER BY b.id LIMIT ?",
        (after_id, limit),
    )
    return [records.book_from_row(r) for r in rows]


def _log_head(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])


def _pruned_through(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'pruned_through'").fetchone()
    return 0 if row is None else int(row[0])
