"""A group-committing writer's pieces that do not depend on its database: jobs, stats, answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.domain.errors import Unavailable

R = TypeVar("R")

ANSWERS_PER_TURN = 4
"""Callers of a committed batch answered per turn of the event loop (see ``resolve``)."""


@dataclass(slots=True)
class Job(Generic[R]):
    """One queued write: what to run, whom to answer, and its outcome once run."""

    operation: Any
    future: asyncio.Future[R]
    result: Any = None
    revision: int = 0
    error: BaseException | None = None


@dataclass
class WriterStats:
    """What a writer has done, for tests and metrics."""

    commits: int = 0
    writes: int = 0
    largest_batch: int = 0
    delayed_batches: int = 0
    """Batches that waited for more writes (SQLite's ``CommitDelay``)."""

    def count(self, batch: Sequence[Job[Any]]) -> None:
        """Record one committed batch."""
        self.commits += 1
        self.writes += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))


def queue_full(max_queued: int) -> Unavailable:
    """The refusal past the queue's bound: the database is slower than the callers for now."""
    return Unavailable(f"{max_queued} writes are waiting already; retry shortly")


def take_queued(
    batch: list[Job[Any]],
    get_nowait: Callable[[], Job[Any] | None],
    empty: type[Exception],
    most: int,
) -> bool:
    """Move queued writes into ``batch``, up to ``most`` in all; True if a stop request (None)
    was among them. ``get_nowait`` raises ``empty`` once the writer's queue is."""
    while len(batch) < most:
        try:
            job = get_nowait()
        except empty:
            return False
        if job is None:
            return True
        batch.append(job)
    return False


def writer_gone() -> Unavailable:
    """The refusal once a writer has stopped for good (it crashed, or the storage closed)."""
    return Unavailable("the database writer stopped; retry shortly")


def resolve(batch: Sequence[Job[Any]], first: int = 0) -> None:
    """Answer each caller still waiting with its write's result or error.

    A few callers are answered now and the rest in later turns of the event loop,
    so a read that arrived meanwhile waits behind a few answers, not a whole batch's.
    """
    end = first + ANSWERS_PER_TURN
    for job in batch[first:end]:
        if job.future.done():
            # Its caller went away (cancelled), or it was answered already.
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
    if end < len(batch):
        asyncio.get_running_loop().call_soon(resolve, batch, end)
