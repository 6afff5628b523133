"""GetBook throughput and p99 latency against two baselines, in one run.

Usage (from the repository root, once ``make serve`` or ``make test`` has set
up ``.venv``; needs ``wrk``: ``apt-get install -y wrk``)::

    .venv/bin/python bench/run.py              # 3 interleaved rounds, ~90 s
    .venv/bin/python bench/run.py --rounds 1   # quicker, noisier
    .venv/bin/python bench/run.py --cases writes  # only the durable-write cases
    .venv/bin/python bench/run.py --help       # duration, connections, CPUs

Three servers, each one uvicorn worker with httptools and uvloop, each on a
loopback port the OS picked (handed over as an open socket, ``--fd``):

- ``library GetBook (SQLite)``: the real service (``python -m server serve
  --demo``), so GetBook goes through the router, the auth and error
  interceptors, the domain and a real SQLite read;
- ``minimal connectrpc``: the generated ``LibraryServiceASGIApplication``
  with a handler returning an in-memory ``GetBookResponse``;
- ``bare ASGI``: an ASGI app answering with fixed bytes.

All three send the same book. ``wrk`` POSTs a Connect unary GetBook with a
binary (``application/proto``) and a JSON (``application/json``) body. The
server is pinned to one CPU and wrk to another when there are two or more.

The script prints a markdown table (medians over the rounds) with req/s, p99,
the server's CPU time per request, and the ratios to both baselines, by req/s
and by CPU time per request; the target is GetBook at >= 0.8x the minimal
connectrpc handler. On a shared machine req/s swings with the other load
while CPU time per request hardly moves, so trust the CPU ratio there.
Nothing asserts a timing: the script fails only if a server does not start or
answers anything but 200. Every process it starts, it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import scale
import uvloop

from server.gen.library.v1 import library_pb as pb

BASELINES = Path(__file__).resolve().with_name("baselines.py")
GET_BOOK = "/library.v1.LibraryService/GetBook"
LIST_BOOKS = "/library.v1.LibraryService/ListBooks"
CONTENT_TYPES = {"binary": "application/proto", "json": "application/json"}
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

CORS_ORIGIN = "https://page.example"
# Above the largest fan-out plus the load generators' connections.
MAX_CONNECTIONS = 12_000
ADMIN_TOKEN = "lib_bench-admin-token-0123456789abcdefghijklmnop"


def library_name(database: str) -> str:
    """The library's row label: which database it serves from."""
    return f"library GetBook ({'PostgreSQL' if is_postgres(database) else 'SQLite'})"


def is_postgres(database: str) -> bool:
    """Whether ``database`` is a PostgreSQL URL (else a SQLite file)."""
    return database.startswith(("postgres://", "postgresql://"))


CONNECT = "minimal connectrpc"
BARE = "bare ASGI"


@dataclass(frozen=True)
class Result:
    """One wrk measurement."""

    requests_per_second: float
    p99_ms: float
    cpu_us_per_request: float


@dataclass(frozen=True)
class Server:
    """A running server under test."""

    name: str
    url: str
    pid: int


def post(url: str, content_type: str, body: bytes) -> tuple[int, bytes]:
    """One Connect unary call; the HTTP status and body (errors included)."""
    request = urllib.request.Request(
        url,
        data=body,
        headers={"content-type": content_type, "connect-protocol-version": "1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def listening_socket() -> socket.socket:
    """A loopback TCP socket on a port the OS picked, to hand to a server.

    With TCP_NODELAY, which accepted connections inherit: uvicorn wraps an
    inherited socket as AF_UNIX and so never sets it, and every response
    would wait ~40 ms for a delayed ACK, measuring the kernel, not the server.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@contextmanager
def serving(
    name: str,
    argv: Sequence[str],
    cpu: int | None,
    log: Path,
    ready: str,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Run ``argv + ['--fd', N]`` on a fresh listening socket until the block ends.

    ``ready`` is a path answered with 200 by a JSON POST of ``{}`` once the
    server can serve.
    """
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*pin, *argv, "--fd", str(sock.fileno())],
            pass_fds=(sock.fileno(),),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LIBRARY_LOG_LEVEL": "warning", **(env or {})},
        )
    # The child owns the socket now.
    sock.close()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text()}")
            try:
                if post(url + ready, "application/json", b"{}")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {READY_TIMEOUT}s (log: {log})")
            time.sleep(0.05)
        yield Server(name, url, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def first_book_id(library: Server) -> int:
    """The id of a seeded book."""
    status, body = post(library.url + LIST_BOOKS, "application/json", b'{"pageSize": 1}')
    books = json.loads(body).get("books") if status == 200 else None
    if not books:
        raise RuntimeError(f"the demo database has no books: {status} {body!r}")
    return int(books[0]["id"])


def request_body(book_id: int, encoding: str) -> bytes:
    """The GetBook request in ``encoding``."""
    message = pb.GetBookRequest(id=book_id)
    return message.to_binary() if encoding == "binary" else message.to_json().encode()


def check(server: Server, encoding: str, body: bytes, book_id: int) -> None:
    """Fail loudly unless ``server`` answers the benchmark request with the right book."""
    content_type = CONTENT_TYPES[encoding]
    status, answer = post(server.url + GET_BOOK, content_type, body)
    if status != 200:
        raise RuntimeError(f"{server.name} {encoding}: HTTP {status} {answer!r}")
    response = (
        pb.GetBookResponse.from_binary(answer)
        if encoding == "binary"
        else pb.GetBookResponse.from_json(answer.decode())
    )
    got = response.book.id if response.book is not None else None
    if got != book_id:
        raise RuntimeError(f"{server.name} {encoding}: got book {got}, not {book_id}")


def wrk_script(directory: Path, encoding: str, body: bytes) -> Path:
    """A wrk Lua script that POSTs ``body`` and prints a machine-readable summary."""
    lua_body = "".join(f"\\{byte:03d}" for byte in body)
    script = directory / f"getbook-{encoding}.lua"
    script.write_text(
        f"""wrk.method = "POST"
wrk.body = "{lua_body}"
wrk.headers["Content-Type"] = "{CONTENT_TYPES[encoding]}"
wrk.headers["Connect-Protocol-Version"] = "1"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %.1f %d %d\\n",
    summary.requests, summary.duration, latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""
    )
    return script


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    server: Server, script: Path, seconds: int, connections: int, cpu: int | None
) -> Result:
    """Load ``server`` for ``seconds`` and summarize; fails on any non-200 or socket error.

    The server's CPU time per request is measured too: other processes on a
    shared machine lower req/s, but hardly what each request costs.
    """
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    argv = [
        *pin,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        server.url + GET_BOOK,
    ]
    cpu_before = cpu_seconds(server.pid)
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    output = done.stdout
    cpu_used = cpu_seconds(server.pid) - cpu_before
    line = next(ln for ln in output.splitlines() if ln.startswith("BENCH "))
    requests, duration_us, p99_us, status_errors, socket_errors = line.split()[1:]
    if int(status_errors) or int(socket_errors):
        raise RuntimeError(
            f"{server.name}: {status_errors} non-2xx answers,"
            f" {socket_errors} socket errors\n{output}"
        )
    return Result(
        requests_per_second=int(requests) / (int(duration_us) / 1e6),
        p99_ms=float(p99_us) / 1000,
        cpu_us_per_request=cpu_used / int(requests) * 1e6,
    )


def median(results: Sequence[Result]) -> Result:
    """The per-field median over rounds."""
    return Result(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in results),
    )


def table(results: dict[tuple[str, str], Result]) -> str:
    """The markdown table: req/s, p99, server CPU per request, and ratios to both baselines.

    A ratio is by req/s, then by CPU time per request (inverted, so that both
    read "higher is faster"). On a busy machine req/s swings with the other
    load while CPU time per request hardly moves.
    """
    lines = [
        "| server | encoding | req/s | p99 ms | server CPU µs/req"
        " | vs minimal connectrpc (req/s, CPU) | vs bare ASGI (req/s, CPU) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (name, encoding), result in results.items():
        ratios = [ratio(result, results[(baseline, encoding)]) for baseline in (CONNECT, BARE)]
        lines.append(
            f"| {name} | {encoding} | {result.requests_per_second:,.0f}"
            f" | {result.p99_ms:.2f} | {result.cpu_us_per_request:.1f}"
            f" | {ratios[0]} | {ratios[1]} |"
        )
    return "\n".join(lines)


def ratio(result: Result, baseline: Result) -> str:
    """``result`` relative to ``baseline``, by req/s and by CPU time per request."""
    by_throughput = result.requests_per_second / baseline.requests_per_second
    by_cpu = baseline.cpu_us_per_request / result.cpu_us_per_request
    return f"{by_throughput:.2f}x, {by_cpu:.2f}x"


def cpus(requested_server: int, requested_client: int) -> tuple[int | None, int | None]:
    """The CPUs to pin to, or None when pinning is impossible here."""
    available = os.sched_getaffinity(0)
    if shutil.which("taskset") is None or len(available) < 2:
        return None, None
    if {requested_server, requested_client} <= available:
        return requested_server, requested_client
    first, second = sorted(available)[:2]
    return first, second


def start_servers(
    stack: ExitStack, work: Path, cpu: int | None, database: str
) -> tuple[list[Server], int]:
    """The library on ``database`` (with the demo books), both baselines, and a book to ask for."""
    library = stack.enter_context(
        serving(
            library_name(database),
            [sys.executable, "-m", "server", "serve", "--demo", "--database", database],
            cpu,
            work / "library.log",
            ready="/grpc.health.v1.Health/Check",
            # As users run it: with an allowed page origin, and a librarian for the writes;
            # a deployment for 10,000 watchers a worker raises the connection cap (1,000).
            env={
                "LIBRARY_CORS_ORIGINS": CORS_ORIGIN,
                "LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN,
                "LIBRARY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            },
        )
    )
    book_id = first_book_id(library)
    status, answer = post(
        library.url + GET_BOOK, "application/proto", request_body(book_id, "binary")
    )
    if status != 200:
        raise RuntimeError(f"GetBook {book_id}: HTTP {status} {answer!r}")
    servers = [library]
    for name, kind in ((CONNECT, "connect"), (BARE, "bare")):
        argv = [sys.executable, str(BASELINES), kind, "--response", answer.hex()]
        servers.append(
            stack.enter_context(serving(name, argv, cpu, work / f"{kind}.log", ready=GET_BOOK))
        )
    return servers, book_id


def add_wrk_options(parser: argparse.ArgumentParser) -> None:
    """The options of every wrk-driven benchmark: load, rounds and CPUs."""
    parser.add_argument("--duration", type=int, default=4, help="seconds measured per case")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of load before a case's first round"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="report the median of N rounds")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)


def ready_to_load() -> bool:
    """Whether wrk is here; also makes a plain `kill` stop the servers (via sys.exit)."""
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    return True


def main() -> int:
    """Run every case, round by round, and print the table of medians."""
    parser = argparse.ArgumentParser(
        description="GetBook vs a minimal connectrpc handler vs bare ASGI, one uvicorn worker."
    )
    add_wrk_options(parser)
    parser.add_argument(
        "--cases",
        default="getbook,scale",
        help="comma-separated: getbook (the table above), fanout, writes, flood;"
        " scale means all three",
    )
    parser.add_argument(
        "--streams",
        default="1000,10000",
        help="WatchBooks fan-out sizes, comma-separated",
    )
    parser.add_argument(
        "--database",
        default="",
        help="the library's database: a PostgreSQL URL (fan-out and GetBook only), else a"
        " fresh SQLite file",
    )
    args = parser.parse_args()
    if is_postgres(args.database) and {"writes", "flood", "scale"} & set(args.cases.split(",")):
        parser.error("on PostgreSQL only getbook and fanout: its writes are bench/pg_writes.py's")
    if not ready_to_load():
        return 2
    server_cpu, client_cpu = cpus(args.server_cpu, args.client_cpu)
    load_before = os.getloadavg()[0]

    rounds: dict[tuple[str, str], list[Result]] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="library-bench-")))
        database = args.database or str(work / "db")
        servers, book_id = start_servers(stack, work, server_cpu, database)
        scripts = {}
        for encoding in CONTENT_TYPES:
            body = request_body(book_id, encoding)
            scripts[encoding] = wrk_script(work, encoding, body)
            for server in servers:
                check(server, encoding, body, book_id)
        cases = set(args.cases.split(","))
        # Rounds interleave the cases, so a burst of load from elsewhere
        # hits one round of each rather than every round of one.
        for round_number in range(1, args.rounds + 1 if "getbook" in cases else 1):
            for encoding, script in scripts.items():
                for server in servers:
                    if round_number == 1 and args.warmup > 0:
                        run_wrk(server, script, args.warmup, args.connections, client_cpu)
                    result = run_wrk(server, script, args.duration, args.connections, client_cpu)
                    rounds.setdefault((server.name, encoding), []).append(result)
                    print(
                        f"round {round_number}: {server.name:<26} {encoding:<6}"
                        f" {result.requests_per_second:>9,.0f} req/s"
                        f"  p99 {result.p99_ms:6.2f} ms"
                        f"  {result.cpu_us_per_request:5.1f} CPU µs/req",
                        file=sys.stderr,
                    )

        pinning = (
            f"server pinned to CPU {server_cpu}, clients to CPU {client_cpu}"
            if server_cpu is not None
            else "no CPU pinning (needs taskset and two CPUs)"
        )
        if rounds:
            medians = {case: median(results) for case, results in rounds.items()}
            print(table(medians))
            print()
            print(
                f"Connect unary GetBook over HTTP/1.1 on one uvicorn worker (httptools, uvloop);"
                f" wrk with 1 thread and {args.connections} connections, {args.duration} s per"
                f" case, median of {args.rounds} interleaved round(s); {pinning};"
                f" load average at start {load_before:.2f}."
            )
        if "scale" in cases:
            cases.update(scale.SCALE_CASES)
        chosen = [case for case in scale.SCALE_CASES if case in cases]
        if chosen:
            counts = [int(n) for n in args.streams.split(",") if n]
            report = uvloop.run(
                scale.run_all(
                    servers,
                    work,
                    database,
                    scripts["binary"],
                    counts,
                    client_cpu,
                    ADMIN_TOKEN,
                    chosen,
                )
            )
            print()
            print(report)
            print()
            print(f"{pinning}; load average at start {load_before:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
