"""SQLite's one writer per process: a thread that owns the write connection and group-commits.

Writes never run on the event loop: neither the statements, nor the wait for
another process's write lock, nor the fsync of ``synchronous = FULL``. The
thread takes the first queued write, waits for the write lock (BEGIN
IMMEDIATE), then takes every write that queued meanwhile and runs each in its
own SAVEPOINT, so one that fails is undone alone. One COMMIT (one fsync) makes
the whole batch durable, and only then is each caller answered: no write is
acknowledged before it is on disk, and a crash before the COMMIT loses only
unacknowledged writes. Revisions follow the order of the batch, which is the
commit order.

On one busy core the commit, not the statements, is most of the thread's
work (a one-row commit costs 230 to 335 µs of CPU on a real disk, against 25 to 45
µs per write in a batch), and writes only trickle in while the event loop
parses them. So, like PostgreSQL's ``commit_delay``, a batch waits a little
for more when writes are arriving together: when some came in while the last
batch committed (before its callers were answered, so none of theirs), the
thread sleeps one ``CommitDelay.step`` at a time for as long as each step
brings more, never longer than ``CommitDelay.most`` in all, and only then
takes the write lock. A write that finds the thread idle commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from server.storage.batch import (
    Job,
    WriterStats,
    queue_full,
    resolve,
    take_queued,
    writer_gone,
)

log = logging.getLogger("library.storage")

R = TypeVar("R")

Operation = Callable[[sqlite3.Connection], R]
"""A write: runs on the transaction and returns its result."""

_MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class CommitDelay:
    """How long a batch waits for more writes while they keep arriving (seconds)."""

    step: float = 0.0003
    """One wait: the batch is committed after a step that brings no new write."""
    most: float = 0.002
    """The longest a batch waits in all."""


class Writer:
    """Runs writes on one thread and commits those that arrive together as one transaction.

    ``on_commit`` is called on the event loop with the results of each committed
    batch's writes that succeeded, in commit order, before any of its callers is
    answered.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        on_commit: Callable[[list[Any]], None],
        name: str,
        max_queued: int,
        delay: CommitDelay | None = None,
    ) -> None:
        self._db = connection
        self._delay = delay or CommitDelay()
        self._on_commit = on_commit
        self._max_queued = max_queued
        self._queue: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: list[Job[Any]] = []
        """The batch in progress, for the callers a crash would otherwise leave waiting."""
        self._crashed = False
        self.stats = WriterStats()

    def start(self) -> None:
        """Start the thread; writes are answered on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    async def stop(self) -> None:
        """Finish the writes already queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)

    @property
    def queued(self) -> int:
        """Writes waiting for the next batch."""
        return self._queue.qsize()

    def close(self) -> None:
        """Close the write connection (after ``stop``)."""
        self._db.close()

    async def write(self, operation: Operation[R]) -> R:
        """Run ``operation`` in the next batch; its result once the batch is durable."""
        if self._crashed:
            raise writer_gone()
        if not self._thread.is_alive():
            raise RuntimeError("storage is not open")
        if self._queue.qsize() >= self._max_queued:
            # The disk or another process's lock is slower than the callers: refuse
            # rather than queue without bound; a retry soon is likely to get in.
            raise queue_full(self._max_queued)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put(Job(operation, future))
        if self._crashed:
            # It crashed as this was queued, and may have emptied the queue already.
            self._answer(self._take_all(), False)
        # A caller that goes away (a reset stream) cancels only its wait: the
        # write stays queued and is done, and its outcome, now nobody's, is
        # dropped (a shielded future would log a failure "never retrieved").
        return await future

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:
            # Whatever escaped, nobody may wait for this thread in vain: writes in
            # progress or queued fail, and later ones are refused.
            log.exception("the writer thread crashed; refusing writes")
            self._crashed = True
            if self._db.in_transaction:
                # Or the write lock stays held, and every other process's writes wait.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            left = _fail(self._batch) + self._take_all()
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._answer, left, False)

    def _take_all(self) -> list[Job[Any]]:
        """Empty the queue, each write failed as the crashed thread's."""
        left: list[Job[Any]] = []
        while take_queued(left, self._queue.get_nowait, queue.Empty, sys.maxsize):
            pass  # A stop request, skipped: every write still gets its answer.
        return _fail(left)

    def _serve(self) -> None:
        arriving = False
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._batch = [first]
            stop = arriving and self._gather(batch)
            arriving = False
            try:
                # Waits here, off the loop, while another process holds the write lock.
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                # Whatever queued meanwhile would wait just as long: answer it too.
                stop = self._take_queued(batch) or stop
                self._finish(batch, failure=e)
            else:
                stop = self._take_queued(batch) or stop
                failure = self._commit(batch)
                # Looked at before the batch's callers are answered: a write they
                # send next is no sign of others arriving together.
                arriving = not self._queue.empty()
                self._finish(batch, failure)
            self._batch = []
            if stop:
                return

    def _gather(self, batch: list[Job[Any]]) -> bool:
        """Let ``batch`` grow while each step brings more; True if a stop request came.

        It sleeps rather than waits on the queue, so writes queued meanwhile
        wake nobody: one wake-up per step, not per write.
        """
        deadline = time.monotonic() + self._delay.most
        self.stats.delayed_batches += 1
        while len(batch) < _MAX_BATCH:
            had = len(batch)
            time.sleep(self._delay.step)
            if self._take_queued(batch):
                return True
            if len(batch) == had or time.monotonic() >= deadline:
                return False
        return False

    def _take_queued(self, batch: list[Job[Any]]) -> bool:
        """Move queued writes into ``batch``; True if a stop request was among them."""
        return take_queued(batch, self._queue.get_nowait, queue.Empty, _MAX_BATCH)

    def _commit(self, batch: list[Job[Any]]) -> BaseException | None:
        """Run each write in its own savepoint and commit; the error that undid all, if any."""
        db = self._db
        try:
            for job in batch:
                db.execute("SAVEPOINT write")
                try:
                    job.result = job.operation(db)
                except Exception as e:
                    job.error = e
                    if not db.in_transaction:
                        # SQLite rolled the whole transaction back (I/O error, disk full).
                        return e
                    db.execute("ROLLBACK TO write")
                db.execute("RELEASE write")
            db.execute("COMMIT")
            return None
        except Exception as e:
            if db.in_transaction:
                # A failing ROLLBACK leaves SQLite to roll back when the connection
                # closes; the batch is lost either way, and the thread must live on.
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return e

    def _finish(self, batch: list[Job[Any]], failure: BaseException | None) -> None:
        """Hand the outcome to the event loop; with ``failure`` nothing of the batch is kept."""
        if failure is not None:
            log.warning("a batch of %d writes was rolled back: %s", len(batch), failure)
            for job in batch:
                job.error = job.error or failure
        else:
            self.stats.count(batch)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._answer, batch, failure is None)

    def _answer(self, batch: list[Job[Any]], committed: bool) -> None:
        try:
            if committed:
                self._on_commit([job.result for job in batch if job.error is None])
        finally:
            resolve(batch)


def _fail(jobs: list[Job[Any]]) -> list[Job[Any]]:
    """``jobs``, each failed as the crashed thread's."""
    for job in jobs:
        job.error = writer_gone()
    return jobs
