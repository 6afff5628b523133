"""CPU time per durable write, driving the whole ASGI app in-process; optionally profiled.

Usage (from the repository root)::

    .venv/bin/python bench/in_process_writes.py              # 5 rounds, ~20 s
    .venv/bin/python bench/in_process_writes.py --profile 30 # cProfile, top 30 by own time

No sockets, no HTTP parser, no load generator: one ``LibraryApp`` (SQLite on
tmpfs when there is one, so fsync costs little and what is left is the
server's own work; ``LIBRARY_CORS_ORIGINS`` set) is called with Connect unary
CreateBook, and CheckoutBook then ReturnBook, as JSON with a librarian's
bearer token, 32 calls in flight at a time so the writer batches them as under
load. CPU time is this process's (every thread, the writer's included) per
call; the table gives the fastest and the median round. Nothing asserts a
timing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from in_process import ORIGIN, poster, started
from scale import isbn13

from server.app.settings import Settings
from server.app.wiring import opened_library
from server.domain.auth import new_token
from server.domain.models import Role

SERVICE = "/library.v1.LibraryService/"
IN_FLIGHT = 32

Call = Callable[[int], Awaitable[None]]


def unary(app: Any, method: str, token: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """A JSON call of ``method`` through the whole app; fails unless it is answered with 200."""
    post = poster(
        app,
        SERVICE + method,
        [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"origin", ORIGIN.encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
    )
    return lambda message: post(json.dumps(message).encode())


async def timed(call: Call, count: int) -> float:
    """CPU microseconds per call, ``IN_FLIGHT`` at a time."""
    began = time.process_time()
    for first in range(0, count, IN_FLIGHT):
        await asyncio.gather(*(call(i) for i in range(first, min(first + IN_FLIGHT, count))))
    return (time.process_time() - began) / count * 1e6


async def cases(work: Path) -> dict[str, Call]:
    """CreateBook and CheckoutBook + ReturnBook on a fresh app."""
    settings = Settings(
        database_url=str(work / "writes.db"), cors_origins=[ORIGIN], log_level="warning"
    )
    token = new_token()
    async with opened_library(settings) as library:
        await library.put_member_token("Bench Librarian", Role.LIBRARIAN, token)
    app = await started(settings, {})
    create = unary(app, "CreateBook", token)
    checkout = unary(app, "CheckoutBook", token)
    give_back = unary(app, "ReturnBook", token)
    loan_ids: list[int] = []

    async def create_book(i: int) -> None:
        await create({"title": f"T{i}", "author": "A", "isbn": isbn13()})

    for i in range(IN_FLIGHT):
        await create_book(i)
        loan_ids.append(i + 1)

    async def loan(i: int) -> None:
        book = loan_ids[i % IN_FLIGHT]
        await checkout({"id": book})
        await give_back({"id": book})

    return {"CreateBook": create_book, "CheckoutBook + ReturnBook": loan}


async def report(rounds: int, calls: int, profile: int) -> None:
    """Measure (or profile), print, and leave (the app's lifespan is still running)."""
    work = Path(tempfile.mkdtemp(prefix="library-bench-", dir=_tmpfs()))
    try:
        calls_of = await cases(work)
        for call in calls_of.values():
            await timed(call, calls // 4)
        if profile:
            for name, call in calls_of.items():
                profiler = cProfile.Profile()
                profiler.enable()
                await timed(call, calls)
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
                print(f"## {name}\n{out.getvalue()}")
        else:
            figures: dict[str, list[float]] = {name: [] for name in calls_of}
            for _ in range(rounds):
                for name, call in calls_of.items():
                    figures[name].append(await timed(call, calls))
            print("| in-process write | CPU µs/call (fastest round) | median round |")
            print("|---|---:|---:|")
            for name, values in figures.items():
                print(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} |")
            print(
                f"\n{calls} calls per case per round, {IN_FLIGHT} in flight, {rounds} interleaved"
                f" rounds, database in {work.parent}; load average {os.getloadavg()[0]:.2f}."
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


def _tmpfs() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def main() -> None:
    """Parse the options and report."""
    parser = argparse.ArgumentParser(description="Durable writes in-process: CPU per call.")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per case per round (2000)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile instead; print the top N"
    )
    args = parser.parse_args()
    uvloop.run(report(args.rounds, args.calls, args.profile))


if __name__ == "__main__":
    main()
