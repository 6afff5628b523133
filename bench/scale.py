"""The live-at-scale cases of `make bench`: fan-out, idle watchers, writes, snapshot flood.

Each figure is a ratio to a baseline measured in the same run:

- **fan-out**: N WatchBooks streams on one worker (opened 64 at a time), then
  one CreateBook; the time until each stream has the event, p50/p99 over a few
  rounds, for the library, the minimal connectrpc handler and the bare ASGI
  floor at the same N. Also the idle cost of the N streams (server CPU, % of a
  core) and the RSS each idle watcher adds.
- **writes**: durable CreateBook, and CheckoutBook + ReturnBook, from 32
  connections, against the disk's floor measured here too: SQLite WAL,
  ``synchronous = FULL``, one row per commit, one thread, no server; and
  against the ceiling of serving calls at all: the minimal connectrpc
  handler's CreateBook (no work) from the same client. Server CPU time per
  call gives what one core could serve, robust to a busy client core.
- **reads beside writes**: GetBook p99 (wrk) alone, then with that write load.
- **snapshot flood**: 200 ``since_revision = 0`` watchers that never read, on an
  8,000-book catalogue: GetBook p99 meanwhile and the server's RSS growth.

The client side is this process (asyncio on uvloop, pinned to the client CPU).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from wire import Caller, WatchStream, envelope, request_bytes

from server.gen.library.v1 import library_pb as pb

SERVICE = "/library.v1.LibraryService/"
PROTO = "application/proto"
STREAM = "application/connect+proto"
CONNECT_AT_ONCE = 64
FANOUT_ROUNDS = 3
IDLE_SECONDS = 3.0
LIVE_TIMEOUT = 60.0
WRITE_CONNECTIONS = 32
FLOOD_WATCHERS = 200
FLOOD_BOOKS = 8_000

_isbn_serial = itertools.count(int(time.time()) % 10**6 * 1000)


def isbn13() -> str:
    """A fresh, valid ISBN-13."""
    body = f"979{next(_isbn_serial) % 10**9:09d}"
    total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(body))
    return body + str((10 - total % 10) % 10)


def host_port(url: str) -> tuple[str, int]:
    """The host and port of an ``http://host:port`` URL."""
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def rss_mb(pid: int) -> float:
    """The process's resident set size, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def create_request(host: str, token: str) -> bytes:
    """A CreateBook with a fresh ISBN."""
    body = pb.CreateBookRequest(title="Fan-out", author="Bench", isbn=isbn13()).to_binary()
    return request_bytes(host, SERVICE + "CreateBook", PROTO, body, token)


@dataclass(frozen=True)
class FanOut:
    """One server's fan-out to ``streams`` watchers."""

    streams: int
    connect_seconds: float
    p50_ms: float
    p99_ms: float
    idle_core_percent: float
    rss_kb_per_watcher: float
    # Server CPU from the CreateBook to the last stream's event, per stream: the
    # fan-out's cost, steadier than its latency on a shared machine.
    cpu_us_per_stream: float


async def _until_all(streams: list[WatchStream], count: int) -> None:
    deadline = time.monotonic() + LIVE_TIMEOUT
    while True:
        behind = [s for s in streams if len(s.arrivals) < count]
        if not behind:
            return
        failed = [s for s in behind if s.ended]
        if failed:
            raise RuntimeError(f"{len(failed)} streams ended early (HTTP {failed[0].status})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(behind)} streams still without event {count}")
        await asyncio.sleep(0.002)


async def fan_out(url: str, pid: int, count: int, since: int, token: str) -> FanOut:
    """Open ``count`` WatchBooks streams, then time CreateBook reaching all of them."""
    host, port = host_port(url)
    loop = asyncio.get_running_loop()
    watch = request_bytes(
        host,
        SERVICE + "WatchBooks",
        STREAM,
        envelope(pb.WatchBooksRequest(since_revision=since).to_binary()),
    )
    rss_before = rss_mb(pid)
    streams: list[WatchStream] = []
    started = time.perf_counter()
    for first in range(0, count, CONNECT_AT_ONCE):
        opened = await asyncio.gather(
            *(
                loop.create_connection(lambda: WatchStream(watch), host, port)
                for _ in range(min(CONNECT_AT_ONCE, count - first))
            )
        )
        streams += [protocol for _, protocol in opened]
    caller = await Caller.open(host, port)
    try:
        # The first event proves every stream is live (Connect sends no headers before it).
        await caller.call(create_request(host, token))
        await _until_all(streams, 1)
        connect_seconds = time.perf_counter() - started
        cpu_before = cpu_seconds(pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(pid) - cpu_before) / IDLE_SECONDS * 100
        rss_per_watcher = (rss_mb(pid) - rss_before) * 1024 / count
        latencies: list[float] = []
        fan_out_cpu = 0.0
        for k in range(2, 2 + FANOUT_ROUNDS):
            await quiet(pid)
            cpu_before = cpu_seconds(pid)
            sent = time.perf_counter()
            status, _ = await caller.call(create_request(host, token))
            if status != 200:
                raise RuntimeError(f"CreateBook: HTTP {status}")
            await _until_all(streams, k)
            fan_out_cpu += cpu_seconds(pid) - cpu_before
            latencies += [s.arrivals[k - 1] - sent for s in streams]
    finally:
        caller.close()
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
    await quiet(pid)  # the server tears the streams down before the next case
    return FanOut(
        count,
        connect_seconds,
        statistics.median(latencies) * 1000,
        percentile(latencies, 0.99) * 1000,
        idle,
        rss_per_watcher,
        fan_out_cpu / FANOUT_ROUNDS / count * 1e6,
    )


async def quiet(pid: int, window: float = 0.5, busy: float = 0.05) -> None:
    """Until ``pid`` uses less than ``busy`` of a core over ``window`` seconds (at most 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(window)
        if cpu_seconds(pid) - before < busy * window:
            return


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fsync_floor(directory: Path, seconds: float = 2.0) -> float:
    """Durable one-row commits per second on this disk: SQLite WAL, synchronous=FULL."""
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        db = sqlite3.connect(Path(scratch) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        commits = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            db.execute("BEGIN")
            db.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 200,))
            db.execute("COMMIT")
            commits += 1
        rate = commits / (time.perf_counter() - started)
        db.close()
    return rate


@dataclass(frozen=True)
class Load:
    """What a closed-loop load achieved."""

    calls_per_second: float
    p99_ms: float
    errors: int


async def closed_loop(
    url: str, requests: Sequence[Callable[[], bytes]], seconds: float, cycle: int = 1
) -> Load:
    """Each of ``requests`` is one connection calling its factory in a loop for ``seconds``."""
    host, port = host_port(url)
    callers = [await Caller.open(host, port) for _ in requests]
    errors = 0
    deadline = time.perf_counter() + seconds

    async def run(caller: Caller, make: Callable[[], bytes]) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            status, _ = await caller.call(make())
            if status != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(run(c, make) for c, make in zip(callers, requests, strict=True)))
    elapsed = time.perf_counter() - started
    latencies = [x for c in callers for x in c.latencies]
    for caller in callers:
        caller.close()
    return Load(len(latencies) / elapsed / cycle, percentile(latencies, 0.99) * 1000, errors)


async def members(url: str, token: str, count: int) -> list[str]:
    """Tokens of ``count`` new members."""
    host, port = host_port(url)
    caller = await Caller.open(host, port)
    tokens = []
    for _ in range(count):
        body = pb.CreateMemberRequest(name=f"bench {isbn13()}").to_binary()
        status, answer = await caller.call(
            request_bytes(host, SERVICE + "CreateMember", PROTO, body, token)
        )
        if status != 200:
            raise RuntimeError(f"CreateMember: HTTP {status} {answer!r}")
        tokens.append(pb.CreateMemberResponse.from_binary(answer).token)
    caller.close()
    return tokens


async def books(url: str, token: str, count: int) -> list[int]:
    """Ids of ``count`` new books, created from 32 connections."""
    host, port = host_port(url)
    callers = [await Caller.open(host, port) for _ in range(WRITE_CONNECTIONS)]
    ids: list[int] = []
    per = -(-count // WRITE_CONNECTIONS)

    async def run(caller: Caller, n: int) -> None:
        for _ in range(n):
            status, answer = await caller.call(create_request(host, token))
            if status != 200:
                raise RuntimeError(f"CreateBook: HTTP {status} {answer!r}")
            book = pb.CreateBookResponse.from_binary(answer).book
            assert book is not None
            ids.append(book.id)

    await asyncio.gather(
        *(run(c, min(per, count - i * per)) for i, c in enumerate(callers) if count > i * per)
    )
    for caller in callers:
        caller.close()
    return ids


def checkout_return(host: str, book_id: int, token: str) -> Callable[[], bytes]:
    """Alternately CheckoutBook and ReturnBook of one book, as one member."""
    body = pb.CheckoutBookRequest(id=book_id).to_binary()
    calls = itertools.cycle(
        [
            request_bytes(host, SERVICE + "CheckoutBook", PROTO, body, token),
            request_bytes(host, SERVICE + "ReturnBook", PROTO, body, token),
        ]
    )
    return lambda: next(calls)


def wrk_get_book(url: str, script: Path, seconds: int, connections: int, cpu: int | None) -> float:
    """GetBook p99 (ms) under wrk, failing on any error."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    wrk = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s"]
    done = subprocess.run(
        [*pin, *wrk, str(script), url + SERVICE + "GetBook"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("BENCH "))
    print(f"GetBook p99 with wrk: {line}", file=sys.stderr)
    _, _, p99_us, status_errors, socket_errors = line.split()[1:]
    if int(status_errors) or int(socket_errors):
        raise RuntimeError(f"GetBook: {status_errors} non-2xx, {socket_errors} socket errors")
    return float(p99_us) / 1000


READ_CONNECTIONS = 4
READ_SECONDS = 4


async def beside(url: str, script: Path, cpu: int | None, load: Coroutine[Any, Any, Load]) -> float:
    """GetBook's p99 while ``load`` runs."""
    reads = asyncio.ensure_future(
        asyncio.to_thread(wrk_get_book, url, script, READ_SECONDS, READ_CONNECTIONS, cpu)
    )
    await load
    return await reads


def flood(url: str, count: int, since: int = 0) -> list[socket.socket]:
    """``count`` WatchBooks(since_revision = ``since``) calls whose client never reads."""
    host, port = host_port(url)
    request = request_bytes(
        host,
        SERVICE + "WatchBooks",
        STREAM,
        envelope(pb.WatchBooksRequest(since_revision=since).to_binary()),
    )
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        sock.sendall(request)
        sockets.append(sock)
    return sockets


async def head_revision(database: str) -> int:
    """The newest revision in a library's database: a PostgreSQL URL or a SQLite file."""
    if database.startswith(("postgres://", "postgresql://")):
        conn = await asyncpg.connect(database)
        try:
            return int(await conn.fetchval("SELECT revision FROM event_head"))
        finally:
            await conn.close()
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])


SCALE_CASES = ("fanout", "writes", "flood")
"""The scale cases, in the order they run: each can be run alone."""


async def run_all(
    servers: Sequence[Any],
    work: Path,
    database: str,
    get_book_script: Path,
    counts: Sequence[int],
    cpu: int | None,
    token: str,
    cases: Sequence[str] = SCALE_CASES,
) -> str:
    """The scale ``cases`` against the library (on ``database``), minimal connectrpc and
    bare ASGI; a report."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    out: list[str] = []
    if "fanout" in cases:
        out += await fan_out_report(servers, database, counts, token)
    if "writes" in cases or "flood" in cases:
        library = servers[0]
        await quiet(library.pid)
        idle_p99 = await asyncio.to_thread(
            wrk_get_book, library.url, get_book_script, READ_SECONDS, READ_CONNECTIONS, cpu
        )
        if "writes" in cases:
            out += await writes_report(servers, work, get_book_script, cpu, token, idle_p99)
        if "flood" in cases:
            out += await flood_report(library, get_book_script, cpu, token, idle_p99)
    return "\n".join(out)


async def fan_out_report(
    servers: Sequence[Any], database: str, counts: Sequence[int], token: str
) -> list[str]:
    """The fan-out table: each server at each count of streams."""
    library, connect, bare = servers
    out = [
        "| WatchBooks streams | server | all connected, s | p50 ms | p99 ms"
        " | p99 vs minimal connectrpc | p99 vs bare ASGI | idle CPU, % of a core"
        " | RSS per idle watcher, KB | server CPU per stream per event, µs |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count in counts:
        results = {}
        for server in (library, connect, bare):
            since = await head_revision(database) if server is library else 0
            results[server.name] = await fan_out(server.url, server.pid, count, since, token)
            print(f"fan-out {count}: {server.name}: {results[server.name]}", file=sys.stderr)
        minimal, floor = results[connect.name], results[bare.name]
        for name, r in results.items():
            out.append(
                f"| {count:,} | {name} | {r.connect_seconds:.1f} | {r.p50_ms:.0f} | {r.p99_ms:.0f}"
                f" | {minimal.p99_ms / r.p99_ms:.2f}x | {floor.p99_ms / r.p99_ms:.2f}x"
                f" | {r.idle_core_percent:.1f} | {r.rss_kb_per_watcher:.1f}"
                f" | {r.cpu_us_per_stream:.1f} |"
            )
    return [*out, ""]


async def measured(pid: int, load: Coroutine[Any, Any, Load]) -> tuple[Load, float]:
    """What ``load`` achieved and the CPU time (µs) the server ``pid`` spent per call."""
    before = cpu_seconds(pid)
    started = time.perf_counter()
    done = await load
    calls = done.calls_per_second * (time.perf_counter() - started)
    return done, (cpu_seconds(pid) - before) * 1e6 / max(calls, 1)


async def writes_report(
    servers: Sequence[Any],
    work: Path,
    get_book_script: Path,
    cpu: int | None,
    token: str,
    idle_p99: float,
) -> list[str]:
    """Durable writes against the disk's floor and the ceiling of serving calls at all."""
    library, connect, _ = servers
    host, _ = host_port(library.url)
    disk = fsync_floor(work)
    creates = [lambda: create_request(host, token)] * WRITE_CONNECTIONS
    # The most unary calls one core can serve through connectrpc: the minimal
    # handler's CreateBook (same request, same answer size, no work) from the same client.
    await quiet(connect.pid)
    ceiling, ceiling_cpu = await measured(
        connect.pid, closed_loop(connect.url, creates, READ_SECONDS)
    )
    tokens = await members(library.url, token, WRITE_CONNECTIONS)
    ids = await books(library.url, token, WRITE_CONNECTIONS)
    loans = [checkout_return(host, i, t) for i, t in zip(ids, tokens, strict=True)]
    results = []
    for name, calls in (("CreateBook", creates), ("CheckoutBook + ReturnBook", loans)):
        # Alone first (the rate and its CPU), then again with GetBook beside it.
        await quiet(library.pid)
        alone = await measured(library.pid, closed_loop(library.url, calls, READ_SECONDS))
        await quiet(library.pid)
        reads = await beside(
            library.url, get_book_script, cpu, closed_loop(library.url, calls, READ_SECONDS)
        )
        results.append((name, alone, reads))
    rate = ceiling.calls_per_second
    # The client shares its core with whatever else runs, so it may be what limits
    # calls/s; CPU time per call is the server's own: 1 s / that is what one core
    # could serve at most, the figure to hold against the disk's floor.
    capacity = 1e6 / ceiling_cpu
    out = [
        "| durable writes, 32 connections | calls/s | vs disk floor | p99 ms | errors"
        " | server CPU µs/call | one core's capacity at that CPU, calls/s | capacity vs floor"
        " | capacity vs ceiling's | GetBook p99 beside, ms | vs GetBook p99 alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| disk floor: SQLite WAL, synchronous=FULL, 1 row per commit | {disk:,.0f} | 1.00x"
        " | | | | | | | | |",
        f"| ceiling: minimal connectrpc CreateBook, no work | {rate:,.0f} | {rate / disk:.2f}x"
        f" | {ceiling.p99_ms:.1f} | {ceiling.errors} | {ceiling_cpu:.0f} | {capacity:,.0f}"
        f" | {capacity / disk:.2f}x | 1.00x | | |",
    ]
    for name, (load, cpu_us), reads in results:
        out.append(
            f"| {name} | {load.calls_per_second:,.0f} | {load.calls_per_second / disk:.2f}x"
            f" | {load.p99_ms:.1f} | {load.errors} | {cpu_us:.0f} | {1e6 / cpu_us:,.0f}"
            f" | {1e6 / cpu_us / disk:.2f}x | {ceiling_cpu / cpu_us:.2f}x | {reads:.2f}"
            f" | {reads / idle_p99:.2f}x |"
        )
    out.append(
        f"| GetBook alone ({READ_CONNECTIONS} connections) | | | | | | | | | {idle_p99:.2f}"
        " | 1.00x |"
    )
    return [*out, ""]


async def flood_report(
    library: Any, get_book_script: Path, cpu: int | None, token: str, idle_p99: float
) -> list[str]:
    """GetBook p99 and RSS growth while non-reading snapshot watchers pile up."""
    await books(library.url, token, FLOOD_BOOKS)
    await quiet(library.pid)
    rss_before = rss_mb(library.pid)
    sockets = flood(library.url, FLOOD_WATCHERS)
    try:
        flood_p99 = await asyncio.to_thread(
            wrk_get_book, library.url, get_book_script, READ_SECONDS, READ_CONNECTIONS, cpu
        )
        rss_growth = rss_mb(library.pid) - rss_before
    finally:
        for sock in sockets:
            sock.close()
    return [
        f"Snapshot flood: {FLOOD_WATCHERS} WatchBooks(since_revision = 0) that never read, on"
        f" {FLOOD_BOOKS:,}+ books: GetBook p99 {flood_p99:.2f} ms ({flood_p99 / idle_p99:.2f}x"
        f" alone), server RSS growth {rss_growth:.1f} MB.",
    ]
