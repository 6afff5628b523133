"""PostgreSQL storage for many workers on many hosts: reads on an asyncpg pool, one writer.

The adapter under ``core.SqlStorage``: it awaits each operation's SQL steps,
a read on a pooled connection, a write in the next batch of this process's
writer (``pg_writer``), which group-commits the writes that arrive together,
each in its own SAVEPOINT, and answers them once committed.

Revisions and commit order: a sequence hands out numbers when a transaction
asks, not when it commits, so revision 11 can become visible before 10 and a
watcher that resumes after 11 would never see 10. Instead revisions follow the
single row of ``event_head``, whose row lock the writing transaction holds
from its start until it commits: each event takes the next number after the
head and the batch's events so far (one rolled back to its savepoint frees
its number for the next), and the batch moves the head once, as it ends. The
next transaction numbers only after the previous one is committed (or rolled
back), so revisions are gapless and become visible strictly in order.

Lock order: every writing transaction takes the ``event_head`` row lock
FIRST, before anything else (the writer's batches: ``SELECT ... FOR UPDATE``
as they begin; migrations: their advisory lock, then, with one pending, ``LOCK
TABLE event_head IN EXCLUSIVE MODE``, which conflicts with that row lock). The head is thereby
the one write mutex of the database, across processes and hosts: a
transaction waiting for it holds no other lock, so writers cannot deadlock,
and whoever holds it reads every earlier write committed, so an operation's
book and member LOCK steps need nothing more. A write that ever took another
lock before the head would break this.

A database that cannot be reached, refuses connections or drops one
mid-request surfaces as Unavailable, so clients know to retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache, partial
from typing import TypeVar

import asyncpg
from asyncpg import exceptions as pg_errors

from server.domain.models import BookEvent
from server.storage.core import Run, SqlStorage
from server.storage.operations import (
    ALL,
    BOOK_LOCK,
    INSERT,
    LOCK,
    MEMBER_LOCK,
    MIGRATION_LOCK,
    ONE,
    SCHEMA_CHANGE_LOCK,
    Dialect,
    Op,
    Operations,
    Write,
)
from server.storage.outages import Outages
from server.storage.pg_wakeup import CHANNEL, Wakeups
from server.storage.pg_writer import Writer

log = logging.getLogger("library.storage")

R = TypeVar("R")

# How each kind of connection names itself to the server (``pg_stat_activity``).
READER_NAME = "library-reader"
WRITER_NAME = "library-writer"
SNAPSHOT_NAME = "library-snapshot"
MIGRATOR_NAME = "library-migrator"

# How long the database may take to accept a connection, answer a statement, lend or
# take back a pooled connection, or close one, before it counts as not answering.
_ANSWER_TIMEOUT_SECONDS = 5.0

DIALECT = Dialect(
    migrations="postgres",
    position="strpos",
    log_head="SELECT revision FROM event_head",
    log_bounds="SELECT revision, pruned_through FROM event_head",
    # The next revision after the head and this batch's events so far (an index's last
    # entry): the head row itself moves once, as the batch ends (``_publish``).
    append_event="INSERT INTO events (revision, type, book, create_time)"
    " SELECT greatest((SELECT max(revision) FROM events), (SELECT revision FROM event_head)) + 1,"
    " ?, ?, ? RETURNING revision",
    record_pruned="UPDATE event_head SET pruned_through = greatest(pruned_through, ?)",
    begin_snapshot="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
)
"""PostgreSQL's spelling of what differs."""


def _publish(revision: int) -> str:
    """Ends a batch whose newest event is ``revision``: the head moves, and watchers wake.

    Once per batch, not per event: each update of the one row leaves a version of it
    that the next update in the transaction steps over.
    NOTIFY is delivered by PostgreSQL at commit, and only then.
    """
    return (
        f"UPDATE event_head SET revision = {revision:d};"
        f" SELECT pg_notify('{CHANNEL}', '{revision:d}')"
    )


# Any constant works, as long as nothing else on the database uses it.
_MIGRATION_LOCK_KEY = 0x6C_69_62_72_61_72_79  # "library"
# Book and member locks take nothing: the writer's transaction holds the head, which
# every write takes first. Migrators take turns on the advisory lock; one with a migration
# pending then holds the head (once it exists), so no write runs beside a schema change,
# while a start with nothing pending leaves the writers alone.
_LOCKS: dict[str, str | None] = {
    BOOK_LOCK: None,
    MEMBER_LOCK: None,
    MIGRATION_LOCK: f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})",
    SCHEMA_CHANGE_LOCK: "DO $$ BEGIN IF to_regclass('event_head') IS NOT NULL THEN"
    " LOCK TABLE event_head IN EXCLUSIVE MODE; END IF; END $$",
}

# A migration takes as long as it takes, and so may the wait for another host's.
_UNBOUNDED = "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0"

# SQLSTATE classes of failures of the server or the connection rather than of
# the request: connection exceptions (08), insufficient resources (53: too many
# connections, disk full) and operator intervention (57P: shutting down,
# cannot connect now); a lock not granted within lock_timeout (55P03); and a
# deadlock (40P01) or serialization failure (40001), which a retry gets past
# (versions that take locks in different orders, mid rolling upgrade).
_OUTAGE_SQLSTATES = ("08", "53", "57P", "55P03", "40P01", "40001")


def _is_outage(error: Exception) -> bool:
    if isinstance(error, pg_errors.PostgresError):
        return str(error.sqlstate or "").startswith(_OUTAGE_SQLSTATES)
    # Unreachable, or not answering in time (TimeoutError is an OSError); a connection
    # cut mid-query (its FATAL message is in, the end of the stream not yet); or a pool or
    # connection already closed, which asyncpg reports as a bare InterfaceError (its
    # subclasses, such as DataError, are bugs).
    return isinstance(error, (OSError, pg_errors.InternalClientError)) or (
        type(error) is pg_errors.InterfaceError
    )


_outages_are_unavailable = Outages(_is_outage, "the database is unavailable; retry shortly")


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders as ``$1``, ``$2``…; no statement quotes a ``?``.

    Bounded, though the statements are the code's own and few (a filter's shapes included).
    """
    first, *rest = sql.split("?")
    return first + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


@lru_cache(maxsize=64)
def returning_id(sql: str) -> str:
    """An INSERT step's statement, numbered, returning the new row's id unless it says what."""
    return numbered(sql if " RETURNING " in sql else f"{sql} RETURNING id")


async def run_steps(op: Op[R], conn: asyncpg.Connection) -> R:
    """Run ``op`` on ``conn`` to its answer."""
    try:
        step = next(op)
        while True:
            kind, sql, args = step
            if kind is LOCK:
                lock = _LOCKS[sql]
                if lock is not None:
                    await conn.execute(lock, *args)
                step = op.send(None)
            elif kind is ONE:
                step = op.send(await conn.fetchrow(numbered(sql), *args))
            elif kind is ALL:
                step = op.send(await conn.fetch(numbered(sql), *args))
            elif kind is INSERT:
                step = op.send(await conn.fetchval(returning_id(sql), *args))
            else:
                await conn.execute(numbered(sql), *args)
                step = op.send(None)
    except StopIteration as done:
        result: R = done.value
        return result


async def _run_write(
    op: Write[R], conn: asyncpg.Connection
) -> tuple[tuple[R, BookEvent | None], int]:
    """Run a write for the writer: its answer and event, and the revision it appended (or 0)."""
    result, event = await run_steps(op, conn)
    return (result, event), 0 if event is None else event.revision


class PostgresStorage(SqlStorage):
    """Storage in a PostgreSQL database shared by any number of processes.

    ``answer_timeout`` bounds, in seconds, every wait on the database: connecting
    (the pool's, the writer's, a snapshot's and the listener's connections), each
    statement, waiting for a pooled connection and handing it back, and a lock
    held elsewhere. Past it the call fails as Unavailable rather than hanging its
    caller, a watcher or shutdown: a read, a snapshot's page, or the writer's whole
    batch, none of it acknowledged. Migrations are the exception: only their
    connecting is bounded. ``max_queued_writes`` bounds the writes
    waiting for the writer; past it a write is refused as Unavailable.
    """

    def __init__(
        self,
        url: str,
        *,
        event_retention: int,
        pool_size: int = 10,
        answer_timeout: float = _ANSWER_TIMEOUT_SECONDS,
        max_queued_writes: int = 10_000,
    ) -> None:
        self._wakeups = Wakeups(url, answer_timeout)
        super().__init__(Operations(DIALECT, event_retention), self._wakeups)
        self._url = url
        self._pool_size = pool_size
        self._answer_timeout = answer_timeout
        self._pool: asyncpg.Pool | None = None
        self._writer: Writer | None = None
        self._max_queued_writes = max_queued_writes

    async def open(self) -> None:
        """Create the pool, migrate under an advisory lock, start the writer and listening."""
        with _outages_are_unavailable:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                # Connecting, and each statement: a stalled server fails the call.
                # asyncpg cancels a statement past it and takes its connection back
                # only once the server confirms, else drops it (``Pool.release``).
                timeout=self._answer_timeout,
                command_timeout=self._answer_timeout,
                # A lock held elsewhere (a schema change's, an operator's) is waited for
                # as long as SQLite's busy timeout, then the read is UNAVAILABLE, not hung.
                server_settings={
                    "lock_timeout": str(int(self._answer_timeout * 1000)),
                    "application_name": READER_NAME,
                },
            )
        try:
            with _outages_are_unavailable:
                # Before any batch, which locks the head the first migration creates.
                await self._migrate()
            self._writer = Writer(
                partial(self._connect, WRITER_NAME),
                _publish,
                self._hand_over,
                self._max_queued_writes,
            )
            self._writer.start()
            with _outages_are_unavailable:
                await self._wakeups.start()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        """Apply pending migrations on a connection of its own, its statements unbounded.

        Connecting is bounded; waiting for another process's migration, or a long
        migration statement, is not: hosts starting together wait for each other.
        """
        conn = await asyncpg.connect(
            self._url,
            timeout=self._answer_timeout,
            server_settings={"application_name": MIGRATOR_NAME},
        )
        try:
            async with conn.transaction():
                await conn.execute(_UNBOUNDED)
                await run_steps(self._ops.migrate(), conn)
        finally:
            try:
                await conn.close(timeout=self._answer_timeout)
            except TimeoutError:
                log.warning("closing the migration's connection timed out; dropped it")

    async def _connect(self, name: str) -> asyncpg.Connection:
        """A connection of its own (the writer's, or a snapshot's), opened in bounded time."""
        return await asyncpg.connect(
            self._url,
            timeout=self._answer_timeout,
            command_timeout=self._answer_timeout,
            server_settings={"application_name": name},
        )

    async def close(self) -> None:
        """Finish queued writes, stop listening and close the pool; safe to call twice."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                await writer.stop(self._answer_timeout)
        finally:
            try:
                await self._wakeups.stop()
            finally:
                await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._answer_timeout)
            except TimeoutError:
                log.warning("closing the connection pool timed out; terminating it")
                pool.terminate()

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._pool

    def _lend(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A pooled connection, waited for (and taken back) at most the answer timeout.

        Waiting covers every connection being busy and a new one connecting.
        """
        lending: AbstractAsyncContextManager[asyncpg.Connection] = self._db.acquire(
            timeout=self._answer_timeout
        )
        return lending

    async def _read(self, op: Op[R]) -> R:
        """On a pooled connection, outside any transaction."""
        with _outages_are_unavailable:
            async with self._lend() as conn:
                return await run_steps(op, conn)

    @property
    def writer(self) -> Writer:
        """The task running this process's writes (its stats and queue, for tests and metrics)."""
        if self._writer is None:
            raise RuntimeError("storage is not open")
        return self._writer

    async def _write(self, op: Write[R]) -> R:
        """In the writer's next batch; its commit wakes this process's watchers at once."""
        with _outages_are_unavailable:
            result, _ = await self.writer.write(partial(_run_write, op))
        return result

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Run]:
        """A connection of its own, not a pooled one.

        A client that reads slowly holds its snapshot open, and must not hold a
        connection other requests need.
        """
        with _outages_are_unavailable:
            conn = await self._connect(SNAPSHOT_NAME)

        async def run(op: Op[R]) -> R:
            with _outages_are_unavailable:
                return await run_steps(op, conn)

        try:
            yield run
        finally:
            try:
                await conn.close(timeout=self._answer_timeout)
            except TimeoutError:
                # asyncpg has dropped the connection by then; the server ends its side.
                log.warning("closing a snapshot's connection timed out; dropped it")

    @property
    def pool_usage(self) -> tuple[int, int] | None:
        """The asyncpg pool's connections open and lent out; None while closed."""
        if self._pool is None:
            return None
        size = self._pool.get_size()
        return size, size - self._pool.get_idle_size()

    async def wait_for_events(self, revision: int, max_wait: float) -> None:
        """Wake on a commit by any process (NOTIFY), or after ``max_wait`` as a safety net."""
        await self._wakeups.wait_past(revision, max_wait)
