"""The embedded default: SQLite in WAL mode; reads inline, writes on one writer thread.

The adapter under ``core.SqlStorage``: it drives each operation's SQL steps
synchronously on a connection. A primary-key read costs a few microseconds,
far less than a hop to a thread pool, so reads run on the event loop (WAL
readers never wait for writers). Writes go to the process's one writer thread
(``sqlite_writer``), which group-commits them under SQLite's write lock (BEGIN
IMMEDIATE), each in its own SAVEPOINT: that lock is what serializes checkouts
and keeps revisions in commit order, also across processes, so an operation's
LOCK steps need nothing more here. Snapshots read on threads of their own.

Watchers in this process are woken at once by its own writes; for other
processes' writes one poller task reads the head while anyone waits.
A write lock held elsewhere past the busy timeout surfaces as Unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import TypeVar

from server.domain.errors import Unavailable
from server.storage.core import Run, SqlStorage
from server.storage.head import Head
from server.storage.operations import ALL, EXEC, INSERT, ONE, Dialect, Op, Operations, Write
from server.storage.outages import Outages
from server.storage.sqlite_reader import ThreadedReader
from server.storage.sqlite_writer import CommitDelay, Writer

log = logging.getLogger("library.storage")

POLLER_TASK_NAME = "library-sqlite-head-poller"
"""The name of the task that looks for other processes' writes."""

WRITER_THREAD_NAME = "library-sqlite-writer"
"""The name of the thread that runs every write of this process."""

SNAPSHOT_THREAD_NAME = "library-sqlite-snapshot"
"""The name prefix of the threads that read WatchBooks snapshots."""

R = TypeVar("R")

_LOG_HEAD = "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
# AUTOINCREMENT numbers the events: never reused, even after pruning. One
# statement reads both bounds, so they come from one read transaction.
DIALECT = Dialect(
    migrations="sqlite",
    position="instr",
    log_head=f"SELECT {_LOG_HEAD}",
    log_bounds=f"SELECT {_LOG_HEAD},"
    " coalesce((SELECT value FROM meta WHERE key = 'pruned_through'), 0)",
    append_event="INSERT INTO events (type, book, create_time) VALUES (?, ?, ?)",
    record_pruned="INSERT INTO meta (key, value) VALUES ('pruned_through', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
    begin_snapshot="BEGIN",
)
"""SQLite's spelling of what differs."""

_BUSY_CODES = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
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


_busy_is_unavailable = Outages(_is_busy, "the database is busy; retry shortly")


def run_steps(op: Op[R], db: sqlite3.Connection) -> R:
    """Run ``op`` on ``db`` to its answer, here and now."""
    try:
        step = next(op)
        while True:
            kind, sql, args = step
            if kind is ONE:
                step = op.send(db.execute(sql, args).fetchone())
            elif kind is ALL:
                step = op.send(db.execute(sql, args).fetchall())
            elif kind is INSERT:
                cursor = db.execute(sql, args)
                step = op.send(cursor.lastrowid if cursor.rowcount else None)
            elif kind is EXEC:
                db.execute(sql, args)
                step = op.send(None)
            else:
                # A LOCK: the writer's transaction holds the whole file's write lock.
                step = op.send(None)
    except StopIteration as done:
        result: R = done.value
        return result


class SQLiteStorage(SqlStorage):
    """Storage in one SQLite file; several processes may share it.

    ``busy_timeout`` is how many seconds a statement waits for another
    connection's lock before the call fails as Unavailable; ``commit_delay``
    how long a batch may wait for more writes (``sqlite_writer``).
    """

    def __init__(
        self,
        path: str,
        *,
        event_retention: int,
        busy_timeout: float = _BUSY_TIMEOUT_SECONDS,
        max_queued_writes: int = 10_000,
        commit_delay: CommitDelay | None = None,
    ) -> None:
        super().__init__(Operations(DIALECT, event_retention), Head())
        self._path = path
        self._max_queued_writes = max_queued_writes
        self._commit_delay = commit_delay
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._writer: Writer | None = None
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None
        self._idle_poller_stop: asyncio.TimerHandle | None = None
        self._snapshot_threads: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Open the file (creating it) and migrate it to the latest schema."""
        with _busy_is_unavailable:
            self._snapshot_threads = ThreadPoolExecutor(
                _SNAPSHOT_THREADS, thread_name_prefix=SNAPSHOT_THREAD_NAME
            )
            writing = self._connect()
            await _switch_to_wal(writing)
            # FULL: a committed loan survives a power cut, not only a crash.
            writing.execute("PRAGMA synchronous = FULL")
            self._writer = Writer(
                writing,
                self._hand_over,
                WRITER_THREAD_NAME,
                self._max_queued_writes,
                self._commit_delay,
            )
            self._writer.start()
            self._db = self._connect()
        try:
            await self._write(self._ops.migrate())
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

    async def _read(self, op: Op[R]) -> R:
        """On the loop's own connection, at once."""
        if self._db is None:
            raise RuntimeError("storage is not open")
        with _busy_is_unavailable:
            return run_steps(op, self._db)

    async def _write(self, op: Write[R]) -> R:
        """In the writer thread's next batch; answered once that is durable."""
        with _busy_is_unavailable:
            result, _ = await self.writer.write(partial(run_steps, op))
        return result

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Run]:
        """A connection of its own, read on one of the snapshot threads."""
        if self._snapshot_threads is None:
            raise RuntimeError("storage is not open")
        reader = ThreadedReader(self._connect, self._snapshot_threads)

        async def run(op: Op[R]) -> R:
            with _busy_is_unavailable:
                return await reader.run(partial(run_steps, op))

        try:
            yield run
        finally:
            reader.close()

    @property
    def pool_usage(self) -> None:
        """None: one write connection on its thread, reads on the loop's own."""
        return None

    async def wait_for_events(self, revision: int, max_wait: float) -> None:
        """Wake on a local write at once, on other processes' writes within a poll interval."""
        if self._idle_poller_stop is not None:
            self._idle_poller_stop.cancel()
            self._idle_poller_stop = None
        if self._poller is None:
            # Nobody has been watching the head: catch up before comparing.
            self._known_head.advance(await self.head_revision())
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
                # The hub's reader waits again at once after each wake-up: stopping the
                # poller only if nobody has for a whole interval spares a task and a
                # catch-up read per cycle.
                self._idle_poller_stop = asyncio.get_running_loop().call_later(
                    _POLL_SECONDS, self._stop_idle_poller
                )

    def _stop_idle_poller(self) -> None:
        self._idle_poller_stop = None
        if not self._waiters and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll(self) -> None:
        """Read the head for all of this process's waiters, however many there are."""
        while True:
            await asyncio.sleep(_POLL_SECONDS)
            try:
                self._known_head.advance(await self.head_revision())
            except (sqlite3.Error, Unavailable) as e:
                # Waiters still re-check the log by themselves after their max_wait.
                log.warning("cannot read the event log head: %s", e)

    async def _stop_poller(self) -> None:
        if self._idle_poller_stop is not None:
            self._idle_poller_stop.cancel()
            self._idle_poller_stop = None
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with suppress(asyncio.CancelledError):
                await poller


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
