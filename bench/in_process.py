"""GetBook's CPU time per call, driving the ASGI app in-process, against the minimal handler.

Usage (from the repository root)::

    .venv/bin/python bench/in_process.py              # 40 interleaved rounds, ~15 s
    .venv/bin/python bench/in_process.py --rounds 10  # quicker, noisier

No sockets, no HTTP parser, no load generator: each case is an ASGI app called
with a Connect unary GetBook (binary) ``await``-ed one after the other on
uvloop. The library's cases are a ``LibraryApp`` each (on its own demo SQLite
database, ``LIBRARY_CORS_ORIGINS`` set): telemetry off (as ``bench/run.py``
serves it), the access log on (the default log level; its lines go to a file
here), and tracing on and sampled. ``minimal connectrpc`` is the baseline of
``bench/run.py``: the generated app with a handler answering one message held
in memory. Rounds of each case alternate; CPU time (this process's, the span
processor's thread included) per call is taken in every round, and the table
gives the fastest round and the median. On a shared machine the fastest round
is the steadiest figure. Nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from baselines import FixedBookHandler
from starlette.types import Message

from server.app import demo
from server.app.asgi import LibraryApp
from server.app.settings import Settings
from server.app.wiring import opened_library
from server.gen.library.v1 import library_connect
from server.gen.library.v1 import library_pb as pb
from server.rpc import convert

GET_BOOK = "/library.v1.LibraryService/GetBook"
ORIGIN = "https://page.example"
OFF = "off"
MINIMAL = "minimal connectrpc"
ACCESS_LOG = "access log"
TRACED = "tracing 100%"
# The library's cases: their log level and OTEL_* variables. Spans are made and
# batched, then dropped (OTEL_TRACES_EXPORTER=discard).
CASES: dict[str, tuple[str, dict[str, str]]] = {
    OFF: ("warning", {}),
    ACCESS_LOG: ("info", {}),
    TRACED: ("warning", {"OTEL_TRACES_EXPORTER": "discard", "OTEL_TRACES_SAMPLER": "always_on"}),
    "tracing 1%": (
        "warning",
        {
            "OTEL_TRACES_EXPORTER": "discard",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        },
    ),
}

Call = Callable[[], Awaitable[None]]
# The apps' lifespans, running until the process ends: their shutdown is not measured.
LIFESPANS: list[asyncio.Future[None]] = []


async def started(settings: Settings, env: dict[str, str]) -> LibraryApp:
    """A LibraryApp built with ``env`` as its only ``OTEL_*`` variables, past its start-up."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    os.environ.update(env)
    app = LibraryApp(settings)
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    answered: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def send(message: Message) -> None:
        if not answered.done():
            answered.set_result(message)

    LIFESPANS.append(asyncio.ensure_future(app({"type": "lifespan"}, messages.get, send)))
    reply = await answered
    if reply["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"start-up failed: {reply}")
    return app


def poster(
    app: Any, path: str, headers: list[tuple[bytes, bytes]]
) -> Callable[[bytes], Awaitable[None]]:
    """POSTs of a body to ``path`` through the whole app; each fails unless answered 200.

    The client stays connected after its request, as a real one would.
    """
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def post(body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        sent = False
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await never
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"{path} answered {statuses}")

    return post


def get_book(app: Any, book_id: int) -> Call:
    """One GetBook (binary) through the whole app; fails unless it is answered with 200."""
    body = pb.GetBookRequest(id=book_id).to_binary()
    post = poster(
        app,
        GET_BOOK,
        [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/proto"),
            (b"origin", ORIGIN.encode()),
        ],
    )
    return lambda: post(body)


async def measure(work: Path, rounds: int, calls: int) -> dict[str, list[float]]:
    """CPU µs per call of each case, one figure per round; databases in ``work``."""
    cases: dict[str, Call] = {}
    for index, (name, (log_level, env)) in enumerate(CASES.items()):
        settings = Settings(
            database_url=str(work / f"{index}.db"), cors_origins=[ORIGIN], log_level=log_level
        )
        async with opened_library(settings) as library:
            await demo.seed(library)
            book = (await library.list_books(1, "", "", False)).books[0]
        cases[name] = get_book(await started(settings, env), book.id)
        if name == OFF:
            minimal = library_connect.LibraryServiceASGIApplication(
                FixedBookHandler(pb.GetBookResponse(book=convert.book(book)))
            )
            cases[MINIMAL] = get_book(minimal, book.id)
    for call in cases.values():
        for _ in range(calls):
            await call()
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            began = time.process_time()
            for _ in range(calls):
                await call()
            figures[name].append((time.process_time() - began) / calls * 1e6)
    return figures


def table(figures: dict[str, list[float]]) -> str:
    """Markdown: fastest and median round, and the ratio of calls per CPU second to ``off``
    and to the minimal handler (fastest round, median round)."""
    off, minimal = figures[OFF], figures[MINIMAL]
    lines = [
        "| in-process GetBook | CPU µs/call (fastest round) | median round"
        " | vs off (fastest, median) | vs minimal connectrpc (fastest, median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in figures.items():
        fastest, median = min(values), statistics.median(values)
        lines.append(
            f"| {name} | {fastest:.1f} | {median:.1f}"
            f" | {min(off) / fastest:.3f}x, {statistics.median(off) / median:.3f}x"
            f" | {min(minimal) / fastest:.3f}x, {statistics.median(minimal) / median:.3f}x |"
        )
    return "\n".join(lines)


async def report(rounds: int, calls: int) -> None:
    """Measure, print the table, and leave (the apps' lifespans are still running)."""
    work = Path(tempfile.mkdtemp(prefix="library-bench-"))
    console = sys.stderr
    # The access log's lines go to a file, as a server's stderr often does.
    sys.stderr = (work / "stderr.log").open("w")
    try:
        figures = await measure(work, rounds, calls)
    finally:
        sys.stderr = console
        shutil.rmtree(work, ignore_errors=True)
    print(table(figures))
    print()
    print(
        f"In-process Connect unary GetBook (binary, answered from the book cache), CORS on;"
        f" {calls} calls per case per round, {rounds} interleaved rounds;"
        f" load average at the end {os.getloadavg()[0]:.2f}."
    )
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    """Parse the options and report."""
    parser = argparse.ArgumentParser(
        description="GetBook in-process: the minimal handler, telemetry off and on."
    )
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (40)")
    parser.add_argument("--calls", type=int, default=300, help="calls per case per round (300)")
    args = parser.parse_args()
    uvloop.run(report(args.rounds, args.calls))


if __name__ == "__main__":
    main()
