"""Every Storage operation, written once, as a sans-IO generator of SQL steps.

SQLite runs a write synchronously on its writer thread, inside one SAVEPOINT of
a group commit; PostgreSQL awaits asyncpg. A generator that yields each
statement and is sent its result runs unchanged under both drivers
(``sqlite.py``, ``postgres.py``), so the SQL and the rules around it (NotFound,
exactly-once checkout, appending and pruning the event log) exist once. A step
costs one generator ``send``, well under a microsecond.

A step is ``(kind, sql, args)``. Statements use ``?`` placeholders (SQLite's
own; the PostgreSQL driver numbers them, once per statement). What the two
databases spell differently is in a ``Dialect``. A ``LOCK`` step names what the
operation needs locked and each driver decides what that takes: for a book or a
member nothing, on either, since each write runs holding a lock taken first that
serialises every writer (SQLite's write lock, PostgreSQL's event-head row; see
``postgres.py``). Unique conflicts are answered
with ``ON CONFLICT DO NOTHING`` (no row inserted), so no driver error ever has
to be thrown into an operation.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from server.domain import search
from server.domain.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
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
from server.storage import migrations, records

log = logging.getLogger("library.storage")

R = TypeVar("R")

ONE = "one"
"""Step kind: run the statement, send back its first row or None."""
ALL = "all"
"""Step kind: run the statement, send back every row."""
EXEC = "exec"
"""Step kind: run the statement, send back None."""
INSERT = "insert"
"""Step kind: run an INSERT, send back the new row's id, or None if it inserted none.

Written without RETURNING: the PostgreSQL driver adds ``RETURNING id`` where the
statement has none, SQLite reads its last row id (RETURNING costs SQLite a
temporary table per statement, which a write can do without).
"""
LOCK = "lock"
"""Step kind: ``sql`` is a lock's name (below), ``args`` its key; sends back None."""

BOOK_LOCK = "book"
"""The book row with id ``args[0]``, held to the end of the transaction."""
MEMBER_LOCK = "member"
"""Members named ``args[0]``, so concurrent puts of one name take turns."""
MIGRATION_LOCK = "migration"
"""The schema, so processes starting together migrate one at a time."""
SCHEMA_CHANGE_LOCK = "schema change"
"""Taken once a migration is pending, before it runs: no write runs beside a schema change."""

Step = tuple[str, str, tuple[Any, ...]]
Op = Generator[Step, Any, R]
"""An operation: yields steps, is sent their results, returns its answer."""
Write = Op[tuple[R, BookEvent | None]]
"""A write: its answer and the event it appended (None for none)."""

AVAILABLE = "NOT EXISTS (SELECT 1 FROM loans l WHERE l.book_id = b.id AND l.return_time IS NULL)"
BOOK_COLUMNS = (
    f"b.id, b.title, b.author, b.isbn, b.published_year, b.create_time, b.update_time, {AVAILABLE}"
)
LOAN_COLUMNS = "id, book_id, member_id, checkout_time, due_time, return_time"
MEMBER_COLUMNS = "id, name, role, create_time"

_BOOK_BY_ID = f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id = ?"
_BOOKS_AFTER = f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id > ? ORDER BY b.id LIMIT ?"
_INSERT_MEMBER = (
    "INSERT INTO members (id, name, role, token_hash, create_time) VALUES (?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database spells its own way; every statement takes ``?`` placeholders."""

    migrations: str
    """The directory of its migrations ("sqlite" or "postgres")."""
    position: str
    """The function finding a substring: ``position(haystack, needle)``, 0 when absent."""
    log_head: str
    """One row: the newest revision (0 when none)."""
    log_bounds: str
    """One row, read consistently: the newest revision and the newest pruned one."""
    append_event: str
    """An INSERT step appending (type, book, create_time) as the next revision; its id is that."""
    record_pruned: str
    """Records that revisions up to ``?`` are pruned, never moving that mark back."""
    begin_snapshot: str
    """Starts the read transaction that every later page of a snapshot reads."""


class Operations:
    """The operations on one database: its dialect and how many events the log keeps."""

    def __init__(self, dialect: Dialect, event_retention: int) -> None:
        self._dialect = dialect
        self._retention = event_retention

    def migrate(self) -> Write[None]:
        """Apply pending migrations and make sure the page-token key exists."""
        yield LOCK, MIGRATION_LOCK, ()
        yield EXEC, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)", ()
        applied = {v for (v,) in (yield ALL, "SELECT version FROM schema_migrations", ())}
        pending = [m for m in migrations.load(self._dialect.migrations) if m.version not in applied]
        if pending:
            yield LOCK, SCHEMA_CHANGE_LOCK, ()
        for migration in pending:
            log.info("applying migration %04d_%s", migration.version, migration.name)
            for statement in migration.statements:
                yield EXEC, statement, ()
            yield EXEC, "INSERT INTO schema_migrations VALUES (?)", (migration.version,)
        yield (
            EXEC,
            "INSERT INTO meta (key, value) VALUES ('signing_key', ?) ON CONFLICT (key) DO NOTHING",
            (secrets.token_bytes(32),),
        )
        return None, None

    def signing_key(self) -> Op[bytes]:
        """The page-token key, created with the database."""
        (key,) = yield ONE, "SELECT value FROM meta WHERE key = 'signing_key'", ()
        return bytes(key)

    def get_book(self, book_id: int) -> Op[Book | None]:
        """The book, or None."""
        row = yield ONE, _BOOK_BY_ID, (book_id,)
        return None if row is None else records.book_from_row(row)

    def list_books(self, where: BookFilter, after_id: int, limit: int) -> Op[Sequence[Book]]:
        """Matching books after ``after_id``, by id."""
        condition, params = self._filter(where)
        rows = yield (
            ALL,
            f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id > ?{condition} ORDER BY b.id LIMIT ?",
            (after_id, *params, limit),
        )
        return [records.book_from_row(r) for r in rows]

    def count_books(self, where: BookFilter) -> Op[int]:
        """How many books match."""
        condition, params = self._filter(where)
        (count,) = yield ONE, f"SELECT count(*) FROM books b WHERE TRUE{condition}", params
        return int(count)

    def create_book(self, book: NewBook, now: datetime) -> Write[Book]:
        """Insert the book and its CREATED event."""
        stamp = records.to_micros(now)
        book_id = yield (
            INSERT,
            "INSERT INTO books (title, author, isbn, published_year, search_text,"
            " create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        if book_id is None:
            raise AlreadyExists(f"a book with isbn {book.isbn} exists already")
        # Ids are never reused, so no loan names a new book: it is available.
        created = Book(
            book_id,
            book.title,
            book.author,
            book.isbn,
            book.published_year,
            available=True,
            create_time=records.from_micros(stamp),
            update_time=records.from_micros(stamp),
        )
        return created, (yield from self._append(EventType.CREATED, created, stamp))

    def delete_book(self, book_id: int, now: datetime) -> Write[Book]:
        """Delete the book unless it is on loan."""
        book = yield from self._locked_book(book_id)
        if not book.available:
            raise FailedPrecondition(f"book {book_id} is on loan; it can be deleted once returned")
        yield EXEC, "DELETE FROM books WHERE id = ?", (book_id,)
        return book, (yield from self._append(EventType.DELETED, book, records.to_micros(now)))

    def checkout_book(
        self, book_id: int, member_id: str, now: datetime, due: datetime
    ) -> Write[tuple[Book, Loan]]:
        """Open a loan; the partial unique index refuses a second open one."""
        stamp = records.to_micros(now)
        book = yield from self._locked_book(book_id)
        due_stamp = records.to_micros(due)
        loan_id = yield (
            INSERT,
            "INSERT INTO loans (book_id, member_id, checkout_time, due_time) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (book_id, member_id, stamp, due_stamp),
        )
        if loan_id is None:
            raise FailedPrecondition(f"book {book_id} is not available: it is on loan")
        loan = records.loan_from_row((loan_id, book_id, member_id, stamp, due_stamp, None))
        lent, event = yield from self._updated(book, stamp, available=False)
        return (lent, loan), event

    def return_book(
        self, book_id: int, borrower: str | None, now: datetime
    ) -> Write[tuple[Book, Loan]]:
        """Close the book's open loan."""
        stamp = records.to_micros(now)
        book = yield from self._locked_book(book_id)
        row = yield (
            ONE,
            f"SELECT {LOAN_COLUMNS} FROM loans WHERE book_id = ? AND return_time IS NULL",
            (book_id,),
        )
        if row is None:
            raise FailedPrecondition(f"book {book_id} is not on loan")
        open_loan = records.loan_from_row(row)
        if borrower is not None and open_loan.member_id != borrower:
            raise PermissionDenied(f"book {book_id} is on loan to someone else")
        yield EXEC, "UPDATE loans SET return_time = ? WHERE id = ?", (stamp, open_loan.id)
        closed = replace(open_loan, return_time=records.from_micros(stamp))
        # The partial unique index allows one open loan per book: closed, the book is free.
        returned, event = yield from self._updated(book, stamp, available=True)
        return (returned, closed), event

    def list_loans(
        self, member_id: str | None, active_only: bool, after_id: int, limit: int
    ) -> Op[Sequence[Loan]]:
        """Loans after ``after_id``, by id."""
        sql = f"SELECT {LOAN_COLUMNS} FROM loans WHERE id > ?"
        params: tuple[Any, ...] = (after_id,)
        if member_id is not None:
            sql += " AND member_id = ?"
            params += (member_id,)
        if active_only:
            sql += " AND return_time IS NULL"
        rows = yield ALL, sql + " ORDER BY id LIMIT ?", (*params, limit)
        return [records.loan_from_row(r) for r in rows]

    def create_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Write[Member]:
        """Insert a member with a fresh id."""
        row = yield (
            ONE,
            f"{_INSERT_MEMBER} ON CONFLICT DO NOTHING RETURNING {MEMBER_COLUMNS}",
            (str(uuid.uuid4()), name, int(role), token_hash, records.to_micros(now)),
        )
        if row is None:
            raise AlreadyExists(f"a member named {name!r} exists already")
        return records.member_from_row(row), None

    def put_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Write[Member]:
        """Create ``name`` or give it this role and token."""
        # Servers starting together put the same member (the admin) at once. Taking
        # turns, the later one updates the row the first committed; racing, it would
        # trip over the token index, which ON CONFLICT (name) does not cover.
        yield LOCK, MEMBER_LOCK, (name,)
        row = yield (
            ONE,
            f"{_INSERT_MEMBER} ON CONFLICT (name) DO UPDATE"
            " SET role = excluded.role, token_hash = excluded.token_hash"
            f" RETURNING {MEMBER_COLUMNS}",
            (str(uuid.uuid4()), name, int(role), token_hash, records.to_micros(now)),
        )
        return records.member_from_row(row), None

    def set_token_hash(self, name: str, token_hash: str) -> Write[Member | None]:
        """Replace the member's token hash."""
        row = yield (
            ONE,
            f"UPDATE members SET token_hash = ? WHERE name = ? RETURNING {MEMBER_COLUMNS}",
            (token_hash, name),
        )
        return (None if row is None else records.member_from_row(row)), None

    def member_by_token_hash(self, token_hash: str) -> Op[Member | None]:
        """The token's member, or None."""
        row = yield ONE, f"SELECT {MEMBER_COLUMNS} FROM members WHERE token_hash = ?", (token_hash,)
        return None if row is None else records.member_from_row(row)

    def head_revision(self) -> Op[int]:
        """The newest committed revision."""
        (head,) = yield ONE, self._dialect.log_head, ()
        return int(head)

    def begin_snapshot(self) -> Op[int]:
        """Start a snapshot's read transaction; the head it sees, which later pages see too."""
        yield EXEC, self._dialect.begin_snapshot, ()
        return (yield from self.head_revision())

    def books_after(self, after_id: int, limit: int) -> Op[list[Book]]:
        """Up to ``limit`` books after ``after_id``, by id: one snapshot page."""
        rows = yield ALL, _BOOKS_AFTER, (after_id, limit)
        return [records.book_from_row(r) for r in rows]

    def events_after(self, revision: int, limit: int) -> Op[Sequence[BookEvent]]:
        """Events after ``revision``; OutOfRange when the log cannot continue from there."""
        rows = yield (
            ALL,
            "SELECT revision, type, book FROM events WHERE revision > ? ORDER BY revision LIMIT ?",
            (revision, limit),
        )
        # Revisions have no gaps, so only a batch that does not start right
        # after ``revision`` needs the bounds checked.
        if not rows or rows[0][0] != revision + 1:
            head, floor = yield ONE, self._dialect.log_bounds, ()
            records.check_resume_point(revision, int(head), int(floor))
        return [records.event_from_row(*r) for r in rows]

    def _filter(self, where: BookFilter) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause's tail for ``where`` (books aliased ``b``) and its parameters."""
        condition, params = "", tuple[str, ...]()
        needles = search.needles(where.query)
        if needles is not None:
            position = self._dialect.position
            text, isbn = needles
            if isbn is None:
                condition = f" AND {position}(b.search_text, ?) > 0"
                params = (text,)
            else:
                condition = f" AND ({position}(b.search_text, ?) > 0 OR {position}(b.isbn, ?) > 0)"
                params = (text, isbn)
        if where.available_only:
            condition += f" AND {AVAILABLE}"
        return condition, params

    def _require_book(self, book_id: int) -> Op[Book]:
        book = yield from self.get_book(book_id)
        if book is None:
            raise NotFound(f"book {book_id} does not exist")
        return book

    def _locked_book(self, book_id: int) -> Op[Book]:
        """Lock the book for this transaction, then read it afresh.

        Read after the lock, so it sees every loan committed while we waited.
        """
        yield LOCK, BOOK_LOCK, (book_id,)
        return (yield from self._require_book(book_id))

    def _updated(self, book: Book, stamp: int, *, available: bool) -> Write[Book]:
        """Stamp the locked ``book`` as changed and append its UPDATED event; returns both.

        The book as it now stands is known without reading it again: it was read
        under this transaction's lock, and only its stamp and loan have changed.
        """
        yield EXEC, "UPDATE books SET update_time = ? WHERE id = ?", (stamp, book.id)
        changed = replace(book, available=available, update_time=records.from_micros(stamp))
        return changed, (yield from self._append(EventType.UPDATED, changed, stamp))

    def _append(self, event_type: EventType, book: Book, stamp: int) -> Op[BookEvent]:
        """Append the event as the transaction's last step (pruning now and then)."""
        revision: int = yield (
            INSERT,
            self._dialect.append_event,
            (int(event_type), records.book_to_json(book), stamp),
        )
        floor = records.prune_floor(revision, self._retention)
        if floor is not None:
            yield EXEC, "DELETE FROM events WHERE revision <= ?", (floor,)
            yield EXEC, self._dialect.record_pruned, (floor,)
        return BookEvent(revision, event_type, book)
