"""GetBook's CPU time per call, driving the ASGI app in-process, against the minimal handler.

Usage (from the repository root)::

    .venv/bin/python bench/in_process.py              # 40 interleaved rounds, ~15 s
    .venv/bin/python bench/in_process.py --rounds 10  # quicker, noisier
    .venv/bin/python bench/in_process.py --http1      # through uvicorn's HTTP/1.1 protocol

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

With ``--http1`` each call is the raw HTTP/1.1 request instead, fed to a
uvicorn protocol object on one kept-alive connection (no socket: a stand-in
transport takes the response), as ``bench/run.py`` serves each server: the
library on its guarded protocol (``server/app/http1.py``), the minimal handler
on uvicorn's own httptools protocol. That adds the HTTP parser, uvicorn's
request cycle and the guard, without the kernel or the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from baselines import FixedBookHandler
from starlette.types import Message
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from server.app import demo
from server.app.asgi import LibraryApp
from server.app.http1 import GuardedHttpToolsProtocol
from server.app.settings import WORKER_SETTINGS_ENV, Settings
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


class _Transport:
    """Stands in for a connection's transport: the response goes nowhere, its status is kept."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.status = b""
        self.answered: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The connected socket (for the peer's address and TCP options); nothing else."""
        return self._sock if name == "socket" else default

    def write(self, data: bytes) -> None:
        """The status line starts a response; uvicorn writes its body in the next write."""
        if data.startswith(b"HTTP/1.1 "):
            self.status = bytes(data[9:12])
        elif self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def is_closing(self) -> bool:
        """Never: the connection is kept alive for every call."""
        return False

    def close(self) -> None:
        """Nothing to close."""

    def pause_reading(self) -> None:
        """Nothing to pause."""

    def resume_reading(self) -> None:
        """Nothing to resume."""


def http1_get_book(
    app: Any, protocol: type[HttpToolsProtocol], sock: socket.socket, book_id: int
) -> Call:
    """One GetBook (binary) as raw HTTP/1.1 through ``protocol``; fails unless answered 200."""
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    config.load()
    connection = protocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport(sock)
    connection.connection_made(transport)  # type: ignore[arg-type]
    body = pb.GetBookRequest(id=book_id).to_binary()
    request = (
        f"POST {GET_BOOK} HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"
        f"content-type: application/proto\r\norigin: {ORIGIN}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()

    async def call() -> None:
        transport.answered = loop.create_future()
        connection.data_received(request)
        await transport.answered
        if transport.status != b"200":
            raise RuntimeError(f"{GET_BOOK} answered {transport.status!r}")

    return call


def connected_socket() -> socket.socket:
    """One end of a loopback TCP connection, for the protocol's peer address and options."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    SOCKETS.extend((client, server))
    return server


# Kept open until the process ends.
SOCKETS: list[socket.socket] = []


async def measure(work: Path, rounds: int, calls: int, http1: bool) -> dict[str, list[float]]:
    """CPU µs per call of each case, one figure per round; databases in ``work``."""
    cases: dict[str, Call] = {}
    for index, (name, (log_level, env)) in enumerate(CASES.items()):
        settings = Settings(
            database_url=str(work / f"{index}.db"), cors_origins=[ORIGIN], log_level=log_level
        )
        # The guarded protocol reads its limits from the workers' settings.
        os.environ.setdefault(WORKER_SETTINGS_ENV, settings.for_workers())
        async with opened_library(settings) as library:
            await demo.seed(library)
            book = (await library.list_books(1, "", "", False)).books[0]
        app = await started(settings, env)
        if name == OFF:
            minimal = library_connect.LibraryServiceASGIApplication(
                FixedBookHandler(pb.GetBookResponse(book=convert.book(book)))
            )
        if http1:
            sock = connected_socket()
            cases[name] = http1_get_book(app, GuardedHttpToolsProtocol, sock, book.id)
            if name == OFF:
                cases[MINIMAL] = http1_get_book(minimal, HttpToolsProtocol, sock, book.id)
        else:
            cases[name] = get_book(app, book.id)
            if name == OFF:
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


async def report(rounds: int, calls: int, http1: bool) -> None:
    """Measure, print the table, and leave (the apps' lifespans are still running)."""
    work = Path(tempfile.mkdtemp(prefix="library-bench-"))
    console = sys.stderr
    # The access log's lines go to a file, as a server's stderr often does.
    sys.stderr = (work / "stderr.log").open("w")
    try:
        figures = await measure(work, rounds, calls, http1)
    finally:
        sys.stderr = console
        shutil.rmtree(work, ignore_errors=True)
    print(table(figures))
    print()
    how = "raw HTTP/1.1 into uvicorn's protocol" if http1 else "the ASGI app called"
    print(
        f"In-process Connect unary GetBook (binary, answered from the book cache; {how}),"
        f" CORS on;"
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
    parser.add_argument(
        "--http1", action="store_true", help="through uvicorn's HTTP/1.1 protocol objects"
    )
    args = parser.parse_args()
    uvloop.run(report(args.rounds, args.calls, args.http1))


if __name__ == "__main__":
    main()
