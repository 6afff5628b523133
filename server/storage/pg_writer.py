"""PostgreSQL's one writer per process: a task that owns one connection and group-commits.

The task takes the first queued write, begins a transaction and locks the
``event_head`` row first, then takes every write that queued meanwhile (up to
``MAX_BATCH``) and runs each in its own SAVEPOINT: one that fails is rolled
back to it alone, undoing nothing else. One COMMIT makes the batch durable,
and only then is each caller answered, so no write is acknowledged before it
is committed. A failure of the transaction itself (the connection lost, the
server gone, COMMIT unanswered so its outcome is unknown) fails every write of
the batch, none acknowledged; the connection is dropped and the next batch
opens a new one.

Why the head first: it makes the head row the one write mutex of the whole
database, across workers and hosts. A transaction waiting for it holds
nothing yet, so no two writers can wait for each other (no lock-order
deadlock, whatever books a batch touches), and revisions, numbered after the
head in batch order and published (the head moved) as the batch ends, are
gapless and visible in commit order.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from server.domain.errors import Unavailable
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

Operation = Callable[[asyncpg.Connection], Awaitable[tuple[R, int]]]
"""A write: runs on the transaction, returns its result and the revision it appended (or 0)."""

TASK_NAME = "library-pg-writer"
"""The name of the task that runs every write of this process."""

MAX_BATCH = 64
"""Writes per transaction at most. A savepoint that writes takes a subtransaction id, and
PostgreSQL keeps 64 per transaction in shared memory: past that, while the batch is
open, every other session's visibility checks must look them up in ``pg_subtrans``."""

# One round trip each (the simple protocol runs several statements at once).
_BEGIN = "BEGIN; SELECT 1 FROM event_head FOR UPDATE; SAVEPOINT write"
_NEXT = "RELEASE SAVEPOINT write; SAVEPOINT write"
_UNDO = "ROLLBACK TO SAVEPOINT write"
_COMMIT = "COMMIT"


class Writer:
    """Runs this process's writes on one connection, committing those that arrive together.

    ``connect`` opens the writer's connection (again after an outage).
    ``publish(revision)`` is the SQL that ends a batch whose newest event is
    ``revision``, run just before its COMMIT.
    ``on_commit`` is called with the results of each committed batch's writes
    that succeeded, in commit order, before any of its callers is answered.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        publish: Callable[[int], str],
        on_commit: Callable[[list[Any]], None],
        max_queued: int,
    ) -> None:
        self._connect = connect
        self._publish = publish
        self._on_commit = on_commit
        self._max_queued = max_queued
        self._queue: asyncio.Queue[Job[Any] | None] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats = WriterStats()

    def start(self) -> None:
        """Start the task on the running event loop."""
        self._task = asyncio.create_task(self._run(), name=TASK_NAME)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Once the task is over, however: nothing left queued waits for it in vain."""
        gone = writer_gone()
        if task.cancelled():
            gone = _abandoned()  # by ``stop``, its grace over
        elif (crash := task.exception()) is not None:
            log.error("the writer crashed; refusing writes", exc_info=crash)
        self._drop_connection()
        self._answer(self._take_all(), gone)

    async def stop(self, grace_seconds: float) -> None:
        """Finish the writes already queued, then close the connection.

        Past ``grace_seconds`` (a database that stopped answering) the batch
        in progress is abandoned: its callers are told Unavailable, none is
        acknowledged, and the connection is dropped.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._queue.put_nowait(None)
        # Waits without taking on the task's outcome: a crash is its done callback's.
        await asyncio.wait([task], timeout=grace_seconds)
        if not task.done():
            log.warning("the writer did not finish in %.0f s; abandoning its writes", grace_seconds)
            task.cancel()
            await asyncio.wait([task])

    def _take_all(self) -> list[Job[Any]]:
        """Empty the queue: the writes in it, without stop requests."""
        left: list[Job[Any]] = []
        while take_queued(left, self._queue.get_nowait, asyncio.QueueEmpty, sys.maxsize):
            pass  # A stop request, skipped: every write still gets its answer.
        return left

    @property
    def queued(self) -> int:
        """Writes waiting for the next batch."""
        return self._queue.qsize()

    async def write(self, operation: Operation[R]) -> R:
        """Run ``operation`` in the next batch; its result once the batch is committed."""
        if self._task is None or self._stopping:
            raise RuntimeError("storage is not open")
        if self._task.done():
            raise writer_gone()
        if self._queue.qsize() >= self._max_queued:
            raise queue_full(self._max_queued)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(operation, future))
        # A caller that goes away (a reset stream) cancels only its wait: the
        # write stays queued and is done, its outcome dropped.
        return await future

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            try:
                stop = await self._commit(batch)
            except asyncio.CancelledError:
                # Cancelled by ``stop`` mid-batch: nothing of it is known to be committed.
                self._drop_connection()
                self._answer(batch, _abandoned())
                raise
            except Exception:
                # A bug past the batch's own error handling (its callers are answered
                # by then): the writer lives on, or this process could write no more.
                log.exception("the writer failed after a batch of %d writes", len(batch))
                self._drop_connection()
                # A stop request taken into that batch is not in the queue any more.
                stop = self._stopping and self._queue.empty()

    async def _commit(self, batch: list[Job[Any]]) -> bool:
        """Run ``batch`` (and what queued meanwhile) as one transaction and answer it.

        Returns True if a stop request was taken from the queue.
        """
        stop: bool | None = None
        try:
            await self._begin()
            stop = self._take_queued(batch)
            conn = self._conn
            assert conn is not None
            undo = False
            for n, job in enumerate(batch):
                if n:
                    await conn.execute(_UNDO if undo else _NEXT)
                try:
                    job.result, job.revision = await job.operation(conn)
                    undo = False
                except Exception as e:
                    # Its own failure, if rolling back to its savepoint works; if the
                    # connection is gone, that fails too and so does the batch.
                    job.error, undo = e, True
            newest = max(job.revision for job in batch)
            end = [_UNDO] if undo else []
            if newest:
                end.append(self._publish(newest))
            status = await conn.execute("; ".join([*end, _COMMIT]))
            if status != _COMMIT:
                # PostgreSQL answers COMMIT in an aborted transaction by rolling it back.
                raise RuntimeError(f"the batch's COMMIT was answered {status!r}")
        except Exception as e:
            # Not committed, or not known to be (a COMMIT without an answer): a new
            # connection for the next batch, and nobody told their write is done.
            self._drop_connection()
            if stop is None:
                # Not begun: what queued meanwhile would fail just the same.
                stop = self._take_queued(batch)
            log.warning("a batch of %d writes failed: %s", len(batch), e)
            self._answer(batch, e)
            return stop
        self.stats.count(batch)
        self._answer(batch, None)
        return stop

    async def _begin(self) -> None:
        """Begin the batch's transaction holding the head, on a new connection if need be.

        A kept connection may have died while idle (a server restart): nothing has
        run on it yet, so one retry on a new connection is safe.
        """
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.execute(_BEGIN)
                return
            except Exception as e:
                if not self._conn.is_closed():
                    raise
                log.info("the writer's connection was lost (%s); reconnecting", e)
        self._drop_connection()
        self._conn = await self._connect()
        await self._conn.execute(_BEGIN)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            # No goodbye: the server rolls back whatever was open when the socket closes.
            conn.terminate()

    def _take_queued(self, batch: list[Job[Any]]) -> bool:
        """Move queued writes into ``batch``; True if a stop request was among them."""
        return take_queued(batch, self._queue.get_nowait, asyncio.QueueEmpty, MAX_BATCH)

    def _answer(self, batch: list[Job[Any]], failure: BaseException | None) -> None:
        """Tell each caller its outcome; with ``failure``, nothing of the batch was kept."""
        if not batch:
            return
        try:
            if failure is not None:
                for job in batch:
                    job.error = failure
            else:
                self._on_commit([job.result for job in batch if job.error is None])
        finally:
            resolve(batch)


def _abandoned() -> Unavailable:
    return Unavailable("the database did not answer in time; retry shortly")
