"""PostgreSQL storage for many workers on many hosts, through an asyncpg pool.

The adapter under ``core.SqlStorage``: it awaits each operation's SQL steps on
a pooled connection, a write in a transaction of its own.

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
row (``FOR UPDATE``, an operation's book LOCK step), then the loans index,
then ``event_head``.

A database that cannot be reached, refuses connections or drops one
mid-request surfaces as Unavailable, so clients know to retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import TypeVar

import asyncpg
from asyncpg import exceptions as pg_errors

from server.storage.core import Run, SqlStorage
from server.storage.operations import (
    ALL,
    BOOK_LOCK,
    INSERT,
    LOCK,
    MEMBER_LOCK,
    MIGRATION_LOCK,
    ONE,
    Dialect,
    Op,
    Operations,
    Write,
)
from server.storage.outages import Outages
from server.storage.pg_wakeup import CHANNEL, Wakeups

log = logging.getLogger("library.storage")

R = TypeVar("R")

# How long the database may take to close the pool, or to accept, answer or
# close a snapshot's own connection, before it counts as not answering.
_ANSWER_TIMEOUT_SECONDS = 5.0

DIALECT = Dialect(
    migrations="postgres",
    position="strpos",
    log_head="SELECT revision FROM event_head",
    log_bounds="SELECT revision, pruned_through FROM event_head",
    # One statement, so the head row stays locked for as short as possible: the
    # increment, the row, and the wake-up (delivered by PostgreSQL at commit).
    append_event=f"""
WITH head AS (UPDATE event_head SET revision = revision + 1 RETURNING revision)
INSERT INTO events (revision, type, book, create_time)
SELECT revision, ?, ?, ? FROM head
RETURNING revision, pg_notify('{CHANNEL}', revision::text)
""",
    record_pruned="UPDATE event_head SET pruned_through = greatest(pruned_through, ?)",
    begin_snapshot="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
)
"""PostgreSQL's spelling of what differs."""

# Any constant works, as long as nothing else on the database uses it.
_MIGRATION_LOCK_KEY = 0x6C_69_62_72_61_72_79  # "library"
_LOCKS = {
    BOOK_LOCK: "SELECT 1 FROM books WHERE id = $1 FOR UPDATE",
    MEMBER_LOCK: "SELECT pg_advisory_xact_lock(hashtextextended('member:' || $1, 0))",
    MIGRATION_LOCK: f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})",
}

# SQLSTATE classes of failures of the server or the connection rather than of
# the request: connection exceptions (08), insufficient resources (53: too many
# connections, disk full) and operator intervention (57P: shutting down,
# cannot connect now); and a lock not granted within lock_timeout (55P03).
_OUTAGE_SQLSTATES = ("08", "53", "57P", "55P03")


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
                await conn.execute(_LOCKS[sql], *args)
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


class PostgresStorage(SqlStorage):
    """Storage in a PostgreSQL database shared by any number of processes.

    ``answer_timeout`` bounds, in seconds, opening a snapshot's connection, each
    of its pages and closing it: a database that stops answering fails the
    snapshot as Unavailable rather than hanging its watcher, or shutdown, for good.
    """

    def __init__(
        self,
        url: str,
        *,
        event_retention: int,
        pool_size: int = 10,
        answer_timeout: float = _ANSWER_TIMEOUT_SECONDS,
    ) -> None:
        self._wakeups = Wakeups(url)
        super().__init__(Operations(DIALECT, event_retention), self._wakeups)
        self._url = url
        self._pool_size = pool_size
        self._answer_timeout = answer_timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool, migrate under an advisory lock, and start listening."""
        with _outages_are_unavailable:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                # A lock held elsewhere (the event head, a book) is waited for as long
                # as SQLite's busy timeout, then the call is UNAVAILABLE, not hung.
                server_settings={"lock_timeout": str(int(self._answer_timeout * 1000))},
            )
        try:
            await self._write(self._ops.migrate())
            with _outages_are_unavailable:
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
                await asyncio.wait_for(pool.close(), _ANSWER_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("closing the connection pool timed out; terminating it")
                pool.terminate()

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._pool

    async def _read(self, op: Op[R]) -> R:
        """On a pooled connection, outside any transaction."""
        with _outages_are_unavailable:
            async with self._db.acquire() as conn:
                return await run_steps(op, conn)

    async def _write(self, op: Write[R]) -> R:
        """In a transaction of its own; its commit wakes this process's watchers at once."""
        with _outages_are_unavailable:
            async with self._db.acquire() as conn, conn.transaction():
                result, event = await run_steps(op, conn)
        self._committed(event)
        return result

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Run]:
        """A connection of its own, not a pooled one.

        A client that reads slowly holds its snapshot open, and must not hold a
        connection other requests need.
        """
        with _outages_are_unavailable:
            conn = await asyncpg.connect(
                self._url, timeout=self._answer_timeout, command_timeout=self._answer_timeout
            )

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
