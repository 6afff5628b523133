"""SQLite's writer thread dying does not leave writes waiting for ever."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from server.domain.errors import Unavailable
from server.storage.sqlite_writer import Writer

pytestmark = pytest.mark.anyio

BOUND_SECONDS = 5.0


class Escape(BaseException):
    """What escapes the writer's loop here: no ``except Exception`` catches it."""


async def test_a_crashed_writer_thread_fails_its_batch_queued_and_later_writes(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / "crash.db", isolation_level=None, check_same_thread=False)
    writer = Writer(db, lambda results: None, "library-test-writer", max_queued=10)
    writer.start()
    running = threading.Event()
    go_on = threading.Event()

    def crashing(conn: sqlite3.Connection) -> None:
        running.set()
        go_on.wait(BOUND_SECONDS)
        raise Escape

    def later(conn: sqlite3.Connection) -> str:
        return "later"

    try:
        first = asyncio.create_task(writer.write(crashing))
        assert await asyncio.to_thread(running.wait, BOUND_SECONDS)
        # Queued behind the batch in progress: the thread dies before taking it.
        queued = asyncio.create_task(writer.write(later))
        await asyncio.sleep(0)
        assert writer.queued == 1
        go_on.set()
        for waiting in (first, queued):
            with pytest.raises(Unavailable):
                await asyncio.wait_for(waiting, BOUND_SECONDS)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(writer.write(later), BOUND_SECONDS)
        await asyncio.wait_for(writer.stop(), BOUND_SECONDS)
        # Its transaction was rolled back: another process could write at once.
        other = sqlite3.connect(tmp_path / "crash.db", isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
    finally:
        go_on.set()
        writer.close()
