"""A snapshot's own read connection, used from worker threads one call at a time.

A caller cancelled while its call runs on a thread (a client that resets its
WatchBooks stream mid-snapshot) leaves that thread running: a thread cannot be
stopped. Closing the connection then, under the running statement, makes
Python's sqlite3 use the handle it has just cleared, and the process dies
(SIGSEGV in ``sqlite3_last_insert_rowid``; under ``serve --http2`` that kills
Envoy). So the connection is closed by whichever finishes last, the call in
flight or the caller, never under a running call.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

R = TypeVar("R")


class ThreadedReader:
    """A connection opened by its first call; every call runs on ``executor``, in turn."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], executor: Executor) -> None:
        self._connect = connect
        self._executor = executor
        self._db: sqlite3.Connection | None = None
        self._call: Future[Any] | None = None

    async def run(self, operation: Callable[[sqlite3.Connection], R]) -> R:
        """``operation``'s result, run on a worker thread with the connection."""
        call = self._executor.submit(self._on_thread, operation)
        self._call = call
        return await asyncio.wrap_future(call)

    def close(self) -> None:
        """Close the connection now, or on the worker thread once its call returns."""
        if self._call is None:
            return
        # Runs at once if the call is done, else on its thread right after it.
        self._call.add_done_callback(self._close_connection)

    def _on_thread(self, operation: Callable[[sqlite3.Connection], R]) -> R:
        if self._db is None:
            self._db = self._connect()
        return operation(self._db)

    def _close_connection(self, _: Future[Any]) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
