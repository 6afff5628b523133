"""SQLite's writer lets a batch wait for more writes while they keep arriving, within bounds,
and answers a batch's callers a few per turn of the event loop.

Each test drives a ``Writer`` on a real database file with its own small
operations, so what reaches one batch is under the test's control; none
asserts a duration.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.domain.models import NewBook
from server.storage.sqlite import SQLiteStorage
from server.storage.sqlite_writer import CommitDelay, Writer
from tests.support.data import isbn13
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

# Long enough that a write sent while the writer sleeps one step lands in that
# step even on a busy machine; the tests wait two steps at most.
STEP = 0.5

Insert = Callable[[sqlite3.Connection], int]


def insert(n: int) -> Insert:
    """A write that inserts ``n``."""

    def run(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return run


@asynccontextmanager
async def writer_on(path: Path, delay: CommitDelay) -> AsyncIterator[Writer]:
    """A started writer on a fresh table ``t``; stopped and closed after."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (n INTEGER)")
    writer = Writer(db, lambda _: None, "test-sqlite-writer", 10_000, delay)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()
        writer.close()


async def held_batch(writer: Writer) -> tuple[asyncio.Future[int], threading.Event]:
    """A write the writer is running now and that goes on until the event is set."""
    running, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> int:
        running.set()
        release.wait(30)
        return -1

    held = asyncio.ensure_future(writer.write(hold))
    await until(running.is_set, "the writer running the first write")
    return held, release


async def a_batch_waiting(writer: Writer) -> tuple[asyncio.Future[int], asyncio.Future[int]]:
    """A held batch's write and the one that came in while it committed, now waiting for more."""
    held, release = await held_batch(writer)
    first = asyncio.ensure_future(writer.write(insert(0)))
    await until(lambda: writer.queued == 1, "the write behind the held batch")
    release.set()
    await until(lambda: writer.stats.delayed_batches == 1, "the next batch waiting")
    return held, first


async def test_a_write_to_an_idle_writer_commits_at_once(tmp_path: Path) -> None:
    # A delay of a minute: any wait at all would outlast the test's deadline.
    storage = SQLiteStorage(
        str(tmp_path / "library.db"),
        event_retention=0,
        commit_delay=CommitDelay(step=60, most=60),
    )
    await storage.open()
    try:
        for i in range(5):
            book = NewBook(f"Lone {i}", "A", isbn13(), 2000)
            await asyncio.wait_for(storage.create_book(book, datetime.now(UTC)), 10)
        stats = storage.writer.stats
    finally:
        await storage.close()
    assert stats.delayed_batches == 0
    assert stats.largest_batch == 1


async def test_writes_arriving_while_a_batch_waits_join_it(tmp_path: Path) -> None:
    async with writer_on(tmp_path / "t.db", CommitDelay(step=STEP, most=60)) as writer:
        # One write comes in while a batch commits: the next one waits for more...
        held, first = await a_batch_waiting(writer)
        # ...and those sent meanwhile join it, not a batch of their own.
        later = [asyncio.ensure_future(writer.write(insert(n))) for n in range(1, 10)]
        results = await asyncio.gather(held, first, *later)
        stats = writer.stats
    assert results == [-1, *range(10)]
    assert stats.commits == 2
    assert stats.largest_batch == 10


async def test_a_batch_stops_waiting_after_the_longest_delay(tmp_path: Path) -> None:
    # Writes keep coming, one every 10 ms, for longer than several delays: each
    # step (ten writes' worth, so even a loaded machine's hiccup leaves none
    # empty) brings more, so only the bound in time cuts the batches.
    sent = 120
    delay = CommitDelay(step=0.1, most=0.3)
    async with writer_on(tmp_path / "t.db", delay) as writer:
        held, release = await held_batch(writer)
        writes = [asyncio.ensure_future(writer.write(insert(0)))]
        await until(lambda: writer.queued == 1, "the write behind the held batch")
        release.set()
        for n in range(1, sent):
            writes.append(asyncio.ensure_future(writer.write(insert(n))))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(held, *writes)
        stats = writer.stats
    assert results == [-1, *range(sent)]
    # 1.2 s of writes in batches of at most 0.3 s: without the bound, one batch.
    assert stats.commits >= 4
    assert stats.largest_batch < sent


async def test_writes_waiting_in_a_delayed_batch_are_committed_on_stop(tmp_path: Path) -> None:
    async with writer_on(tmp_path / "t.db", CommitDelay(step=STEP, most=60)) as writer:
        held, first = await a_batch_waiting(writer)
        second = asyncio.ensure_future(writer.write(insert(1)))
        # Shutting down while the batch waits: it is committed, then the thread ends.
        await writer.stop()
        results = await asyncio.gather(held, first, second)
        stats = writer.stats
    assert list(results) == [-1, 0, 1]
    assert stats.commits == 2


async def test_a_batch_is_answered_a_few_callers_per_turn_of_the_loop(tmp_path: Path) -> None:
    # So a read that arrives meanwhile waits behind a few answers, not a whole batch's.
    turn = 0
    resumed_at: dict[int, int] = {}

    async def count_turns() -> None:
        nonlocal turn
        while True:
            turn += 1
            await asyncio.sleep(0)

    async def call(writer: Writer, n: int) -> int:
        result = await writer.write(insert(n))
        resumed_at[n] = turn
        return result

    async with writer_on(tmp_path / "t.db", CommitDelay(step=0.01, most=0.05)) as writer:
        held, release = await held_batch(writer)
        writes = [asyncio.ensure_future(call(writer, n)) for n in range(10)]
        await until(lambda: writer.queued == 10, "the writes behind the held batch")
        ticker = asyncio.ensure_future(count_turns())
        release.set()
        results = await asyncio.gather(held, *writes)
        ticker.cancel()
        stats = writer.stats
    assert results == [-1, *range(10)]
    assert stats.largest_batch == 10
    # Four answered in one turn, four in the next, two in the one after.
    first, last = [resumed_at[n] for n in range(4)], [resumed_at[n] for n in (8, 9)]
    assert max(first) < min(last)
