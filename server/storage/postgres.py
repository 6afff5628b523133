"""PostgreSQL storage for many workers on many hosts, through an asyncpg pool.

Revisions and commit order: a sequence hands out numbers when a transaction
asks, not when it commits, so revision 11 can become visible before 10 and a
watcher that resumes after 11 would never see 10. Instead every writing
transaction takes its revision as its last step from the single row of
``event_head`` (``UPDATE ... SET revision = revision + 1 RETURNING``). The
row lock is held until commit, so the next writer gets its number only after
the previous one is committed (or rolled back, which undoes its increment):
revisions are gapless and become visible strictly in order. Only that final
step is serialized; the rest of each transaction runs concurrently.

Lock order, the same in every write, so writers cannot deadlock: the book
row (``FOR UPDATE``), then the loans index, then ``event_head``.

A database that cannot be reached, refuses connections or drops one
mid-request surfaces as Unavailable, so clients know to retry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import exceptions as pg_errors

from server.domain import search
from server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from server.domain.models import Book, BookEvent, BookFilter, EventType, Loan, Member, NewBook, Role
from server.domain.storage import SnapshotPages
from server.storage import migrations, records
from server.storage.outages import unavailable_on, unavailable_within
from server.storage.pg_wakeup import CHANNEL, Wakeups
from server.storage.sql import AVAILABLE, BOOK_COLUMNS, LOAN_COLUMNS, MEMBER_COLUMNS

log = logging.getLogger("library.storage")

# Any constant works, as long as nothing else on the database uses it.
_MIGRATION_LOCK = 0x6C_69_62_72_61_72_79  # "library"
_CLOSE_TIMEOUT_SECONDS = 5.0

# One statement, so the head row stays locked for as short as possible: the
# increment, the row, and the wake-up (delivered by PostgreSQL at commit).
_APPEND_SQL = f"""
WITH head AS (UPDATE event_head SET revision = revision + 1 RETURNING revision)
INSERT INTO events (revision, type, book, create_time)
SELECT revision, $1, $2, $3 FROM head
RETURNING revision, pg_notify('{CHANNEL}', revision::text)
"""

# SQLSTATE classes of failures of the server or the connection rather than of
# the request: connection exceptions (08), insufficient resources (53: too many
# connections, disk full) and operator intervention (57P: shutting down,
# cannot connect now).
_OUTAGE_SQLSTATES = ("08", "53", "57P")


def _is_outage(error: Exception) -> bool:
    if isinstance(error, pg_errors.PostgresError):
        return str(error.sqlstate or "").startswith(_OUTAGE_SQLSTATES)
    # Unreachable; a connection cut mid-query (its FATAL message is in, the end of the
    # stream not yet); or a pool or connection already closed, which asyncpg reports as
    # a bare InterfaceError (its subclasses, such as DataError, are bugs).
    return isinstance(error, (OSError, pg_errors.InternalClientError)) or (
        type(error) is pg_errors.InterfaceError
    )


_UNAVAILABLE = "the database is unavailable; retry shortly"
_outage_is_unavailable = unavailable_on(_is_outage, _UNAVAILABLE)


def outages_are_unavailable() -> AbstractContextManager[None]:
    """Raise Unavailable for an outage in this block (for generators, which cannot be decorated)."""
    return unavailable_within(_is_outage, _UNAVAILABLE)


class PostgresStorage:
    """Storage in a PostgreSQL database shared by any number of processes."""

    def __init__(self, url: str, *, event_retention: int, pool_size: int = 10) -> None:
        self._url = url
        self._retention = event_retention
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._wakeups = Wakeups(url)

    @_outage_is_unavailable
    async def open(self) -> None:
        """Create the pool, migrate under an advisory lock, and start listening."""
        pool = await asyncpg.create_pool(self._url, min_size=1, max_size=self._pool_size)
        self._pool = pool
        try:
            async with pool.acquire() as conn, conn.transaction():
                await _migrate(conn)
            await self._wakeups.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and close the pool; safe to call twice."""
        await self._wakeups.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("closing the connection pool timed out; terminating it")
                pool.terminate()

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._pool

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._db.acquire() as conn, conn.transaction():
            yield conn

    @_outage_is_unavailable
    async def signing_key(self) -> bytes:
        """The page-token key, created with the database."""
        return bytes(await self._db.fetchval("SELECT value FROM meta WHERE key = 'signing_key'"))

    @_outage_is_unavailable
    async def get_book(self, book_id: int) -> Book | None:
        """The book, or None."""
        return await _book_by_id(self._db, book_id)

    @_outage_is_unavailable
    async def list_books(self, where: BookFilter, after_id: int, limit: int) -> Sequence[Book]:
        """Matching books after ``after_id``, by id."""
        condition, params = _filter_sql(where, first=2)
        rows = await self._db.fetch(
            f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id > $1 {condition}"
            f" ORDER BY b.id LIMIT ${len(params) + 2}",
            after_id,
            *params,
            limit,
        )
        return [records.book_from_row(r) for r in rows]

    @_outage_is_unavailable
    async def count_books(self, where: BookFilter) -> int:
        """How many books match."""
        condition, params = _filter_sql(where, first=1)
        count = await self._db.fetchval(
            f"SELECT count(*) FROM books b WHERE TRUE {condition}", *params
        )
        return int(count)

    @_outage_is_unavailable
    async def create_book(self, book: NewBook, now: datetime) -> Book:
        """Insert the book and its CREATED event."""
        stamp = records.to_micros(now)
        try:
            async with self._write() as tx:
                book_id = await tx.fetchval(
                    "INSERT INTO books (title, author, isbn, published_year, search_text,"
                    " create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                    book.title,
                    book.author,
                    book.isbn,
                    book.published_year,
                    search.search_text(book.title, book.author, book.isbn),
                    stamp,
                )
                created = await _require_book(tx, book_id)
                revision = await self._append(tx, EventType.CREATED, created, stamp)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a book with isbn {book.isbn} exists already") from None
        self._wakeups.advance(revision)
        return created

    @_outage_is_unavailable
    async def delete_book(self, book_id: int, now: datetime) -> Book:
        """Delete the book unless it is on loan."""
        async with self._write() as tx:
            book = await _lock_book(tx, book_id)
            if not book.available:
                raise FailedPrecondition(
                    f"book {book_id} is on loan; it can be deleted once returned"
                )
            await tx.execute("DELETE FROM books WHERE id = $1", book_id)
            revision = await self._append(tx, EventType.DELETED, book, records.to_micros(now))
        self._wakeups.advance(revision)
        return book

    @_outage_is_unavailable
    async def checkout_book(
        self, book_id: int, member_id: str, now: datetime, due: datetime
    ) -> tuple[Book, Loan]:
        """Open a loan; the partial unique index refuses a second open one."""
        stamp = records.to_micros(now)
        async with self._write() as tx:
            await _lock_book(tx, book_id)
            try:
                # A savepoint, so a refused insert leaves a transaction we can still end cleanly.
                async with tx.transaction():
                    row = await tx.fetchrow(
                        "INSERT INTO loans (book_id, member_id, checkout_time, due_time)"
                        f" VALUES ($1, $2, $3, $4) RETURNING {LOAN_COLUMNS}",
                        book_id,
                        member_id,
                        stamp,
                        records.to_micros(due),
                    )
            except asyncpg.UniqueViolationError:
                raise FailedPrecondition(
                    f"book {book_id} is not available: it is on loan"
                ) from None
            book, revision = await self._updated(tx, book_id, stamp)
        self._wakeups.advance(revision)
        return book, records.loan_from_row(row)

    @_outage_is_unavailable
    async def return_book(
        self, book_id: int, borrower: str | None, now: datetime
    ) -> tuple[Book, Loan]:
        """Close the book's open loan."""
        stamp = records.to_micros(now)
        async with self._write() as tx:
            await _lock_book(tx, book_id)
            row = await tx.fetchrow(
                f"SELECT {LOAN_COLUMNS} FROM loans WHERE book_id = $1 AND return_time IS NULL",
                book_id,
            )
            if row is None:
                raise FailedPrecondition(f"book {book_id} is not on loan")
            open_loan = records.loan_from_row(row)
            if borrower is not None and open_loan.member_id != borrower:
                raise PermissionDenied(f"book {book_id} is on loan to someone else")
            closed = await tx.fetchrow(
                f"UPDATE loans SET return_time = $1 WHERE id = $2 RETURNING {LOAN_COLUMNS}",
                stamp,
                open_loan.id,
            )
            book, revision = await self._updated(tx, book_id, stamp)
        self._wakeups.advance(revision)
        return book, records.loan_from_row(closed)

    @_outage_is_unavailable
    async def list_loans(
        self, member_id: str | None, active_only: bool, after_id: int, limit: int
    ) -> Sequence[Loan]:
        """Loans after ``after_id``, by id."""
        sql = f"SELECT {LOAN_COLUMNS} FROM loans WHERE id > $1"
        params: list[Any] = [after_id]
        if member_id is not None:
            params.append(member_id)
            sql += f" AND member_id = ${len(params)}"
        if active_only:
            sql += " AND return_time IS NULL"
        params.append(limit)
        rows = await self._db.fetch(sql + f" ORDER BY id LIMIT ${len(params)}", *params)
        return [records.loan_from_row(r) for r in rows]

    @_outage_is_unavailable
    async def create_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Insert a member with a fresh id."""
        try:
            row = await self._db.fetchrow(
                "INSERT INTO members (id, name, role, token_hash, create_time)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {MEMBER_COLUMNS}",
                str(uuid.uuid4()),
                name,
                int(role),
                token_hash,
                records.to_micros(now),
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a member named {name!r} exists already") from None
        return records.member_from_row(row)

    @_outage_is_unavailable
    async def put_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Create ``name`` or give it this role and token."""
        async with self._write() as tx:
            # Servers starting together put the same member (the admin) at once.
            # Taking turns, the later one updates the row the first committed;
            # racing, it would trip over the token index, which ON CONFLICT
            # (name) does not cover.
            await tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('member:' || $1, 0))", name
            )
            row = await tx.fetchrow(
                "INSERT INTO members (id, name, role, token_hash, create_time)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name)"
                " DO UPDATE SET role = excluded.role, token_hash = excluded.token_hash"
                f" RETURNING {MEMBER_COLUMNS}",
                str(uuid.uuid4()),
                name,
                int(role),
                token_hash,
                records.to_micros(now),
            )
        return records.member_from_row(row)

    @_outage_is_unavailable
    async def set_token_hash(self, name: str, token_hash: str) -> Member | None:
        """Replace the member's token hash."""
        row = await self._db.fetchrow(
            f"UPDATE members SET token_hash = $1 WHERE name = $2 RETURNING {MEMBER_COLUMNS}",
            token_hash,
            name,
        )
        return None if row is None else records.member_from_row(row)

    @_outage_is_unavailable
    async def member_by_token_hash(self, token_hash: str) -> Member | None:
        """The token's member, or None."""
        row = await self._db.fetchrow(
            f"SELECT {MEMBER_COLUMNS} FROM members WHERE token_hash = $1", token_hash
        )
        return None if row is None else records.member_from_row(row)

    @property
    def committed_head(self) -> int:
        """Its own commits at once; other processes' as their NOTIFY arrives."""
        return self._wakeups.head

    @property
    def pool_usage(self) -> tuple[int, int] | None:
        """The asyncpg pool's connections open and lent out; None while closed."""
        if self._pool is None:
            return None
        size = self._pool.get_size()
        return size, size - self._pool.get_idle_size()

    @_outage_is_unavailable
    async def head_revision(self) -> int:
        """The newest committed revision."""
        return int(await self._db.fetchval("SELECT revision FROM event_head"))

    async def snapshot_pages(self, page_size: int) -> SnapshotPages:
        """Pages of one REPEATABLE READ transaction on a connection of its own.

        Not a pooled connection: a client that reads slowly holds its snapshot
        open, and must not hold a connection other requests need.
        """
        with outages_are_unavailable():
            conn = await asyncpg.connect(self._url)
        try:
            with outages_are_unavailable():
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                head = int(await conn.fetchval("SELECT revision FROM event_head"))
            after = 0
            while True:
                with outages_are_unavailable():
                    rows = await conn.fetch(
                        f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id > $1 ORDER BY b.id"
                        " LIMIT $2",
                        after,
                        page_size,
                    )
                books = [records.book_from_row(r) for r in rows]
                yield head, books
                if len(books) < page_size:
                    return
                after = books[-1].id
        finally:
            await conn.close()

    @_outage_is_unavailable
    async def events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        """Events after ``revision``; OutOfRange when the log cannot continue from there."""
        rows = await self._db.fetch(
            "SELECT revision, type, book FROM events"
            " WHERE revision > $1 ORDER BY revision LIMIT $2",
            revision,
            limit,
        )
        # Revisions have no gaps, so only a batch that does not start right
        # after ``revision`` needs the bounds checked.
        if not rows or rows[0][0] != revision + 1:
            head, floor = await self._db.fetchrow("SELECT revision, pruned_through FROM event_head")
            records.check_resume_point(revision, head, floor)
        return [records.event_from_row(*r) for r in rows]

    async def wait_for_events(self, revision: int, max_wait: float) -> None:
        """Wake on a commit by any process (NOTIFY), or after ``max_wait`` as a safety net."""
        await self._wakeups.wait_past(revision, max_wait)

    async def _updated(self, tx: asyncpg.Connection, book_id: int, stamp: int) -> tuple[Book, int]:
        """Stamp the book as changed and append its UPDATED event; returns both."""
        await tx.execute("UPDATE books SET update_time = $1 WHERE id = $2", stamp, book_id)
        book = await _require_book(tx, book_id)
        return book, await self._append(tx, EventType.UPDATED, book, stamp)

    async def _append(
        self, tx: asyncpg.Connection, event_type: EventType, book: Book, stamp: int
    ) -> int:
        """Append the event as the transaction's last step; returns its revision."""
        row = await tx.fetchrow(_APPEND_SQL, int(event_type), records.book_to_json(book), stamp)
        revision = int(row[0])
        floor = records.prune_floor(revision, self._retention)
        if floor is not None:
            await tx.execute("DELETE FROM events WHERE revision <= $1", floor)
            await tx.execute(
                "UPDATE event_head SET pruned_through = greatest(pruned_through, $1)", floor
            )
        return revision


async def _migrate(conn: asyncpg.Connection) -> None:
    """Apply pending migrations; concurrent starters wait on the advisory lock."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
    applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    for migration in migrations.load("postgres"):
        if migration.version not in applied:
            log.info("applying migration %04d_%s", migration.version, migration.name)
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1)", migration.version)
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('signing_key', $1) ON CONFLICT (key) DO NOTHING",
        secrets.token_bytes(32),
    )


def _filter_sql(where: BookFilter, first: int) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause tail and its parameters, numbered from ``$first``."""
    condition, params = "", tuple[str, ...]()
    needles = search.needles(where.query)
    if needles is not None:
        text, isbn = needles
        if isbn is None:
            condition += f" AND strpos(b.search_text, ${first}) > 0"
            params = (text,)
        else:
            condition += (
                f" AND (strpos(b.search_text, ${first}) > 0 OR strpos(b.isbn, ${first + 1}) > 0)"
            )
            params = (text, isbn)
    if where.available_only:
        condition += f" AND {AVAILABLE}"
    return condition, params


async def _book_by_id(db: asyncpg.Pool | asyncpg.Connection, book_id: int) -> Book | None:
    row = await db.fetchrow(f"SELECT {BOOK_COLUMNS} FROM books b WHERE b.id = $1", book_id)
    return None if row is None else records.book_from_row(row)


async def _require_book(db: asyncpg.Connection, book_id: int) -> Book:
    book = await _book_by_id(db, book_id)
    if book is None:
        raise NotFound(f"book {book_id} does not exist")
    return book


async def _lock_book(tx: asyncpg.Connection, book_id: int) -> Book:
    """Lock the book's row for this transaction, then read it afresh.

    The second read sees every loan committed while we waited for the lock,
    which the locking statement's own snapshot might not.
    """
    if await tx.fetchval("SELECT 1 FROM books WHERE id = $1 FOR UPDATE", book_id) is None:
        raise NotFound(f"book {book_id} does not exist")
    return await _require_book(tx, book_id)
