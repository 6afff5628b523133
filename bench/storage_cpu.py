"""CPU time per Storage operation on SQLite, in process, without a server.

``.venv/bin/python bench/storage_cpu.py [ROUNDS [CALLS]]`` (a few seconds) opens a
fresh database on tmpfs when there is one (so fsync costs nothing and what is
left is this process's own work) and measures process CPU time (user + system,
every thread) per call of create_book, checkout_book + return_book, get_book
and list_books, 64 calls in flight at a time so the writer batches them as it
does under load. Reports the best of ``ROUNDS`` rounds (default 3) of ``CALLS``
calls each (default 5,000), and how many writes the writer committed together
on average (``LIBRARY_BENCH_DIR=<dir>`` puts the database there instead, e.g.
on a real disk, where each commit's fsync costs CPU too).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import uvloop

from server.domain.models import BookFilter, NewBook
from server.storage.sqlite import SQLiteStorage

IN_FLIGHT = 64


async def timed(call: Callable[[int], Awaitable[object]], count: int) -> float:
    """CPU microseconds per call, running ``count`` calls ``IN_FLIGHT`` at a time."""
    started = time.process_time()
    for first in range(0, count, IN_FLIGHT):
        await asyncio.gather(*(call(i) for i in range(first, min(first + IN_FLIGHT, count))))
    return (time.process_time() - started) / count * 1e6


async def one_round(directory: str, round_no: int, calls: int) -> dict[str, float]:
    """One fresh database, every measurement once; with the writes' average batch."""
    storage = SQLiteStorage(os.path.join(directory, f"bench-{round_no}.db"), event_retention=0)
    await storage.open()
    now = datetime.now(UTC)
    due = now + timedelta(days=14)
    ids: list[int] = []

    async def create(i: int) -> None:
        isbn = f"{round_no:03d}{i:010d}"
        book = await storage.create_book(NewBook(f"T{i}", "A", isbn, 2000), now)
        ids.append(book.id)

    async def loan(i: int) -> None:
        await storage.checkout_book(ids[i], "m", now, due)
        await storage.return_book(ids[i], "m", now)

    async def get(i: int) -> None:
        await storage.get_book(ids[i])

    async def page(i: int) -> None:
        await storage.list_books(BookFilter("", False), ids[i % (calls - 50)], 20)

    stats = storage.writer.stats
    commits, writes = stats.commits, stats.writes
    try:
        figures = {
            "create_book": await timed(create, calls),
            "checkout+return": await timed(loan, calls),
        }
        figures["writes per commit"] = (stats.writes - writes) / (stats.commits - commits)
        figures["get_book"] = await timed(get, calls)
        figures["list_books(20)"] = await timed(page, calls)
        return figures
    finally:
        await storage.close()


async def main(rounds: int, calls: int, base: str | None) -> None:
    with tempfile.TemporaryDirectory(dir=base) as directory:
        results = [await one_round(directory, r, calls) for r in range(rounds)]
    print(f"CPU µs per call, best of {rounds} rounds of {calls} (database in {base or 'tmp'}):")
    for name in results[0]:
        best = max if name == "writes per commit" else min
        print(f"  {name:<17} {best(r[name] for r in results):8.1f}")


if __name__ == "__main__":
    where = os.environ.get("LIBRARY_BENCH_DIR") or (
        "/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    args = [int(a) for a in sys.argv[1:]]
    rounds, calls = (args + [3, 5_000][len(args) :])[:2]
    uvloop.run(main(rounds, calls, where))
