"""GetBook throughput and p99 latency against two baselines, in one run.

Usage (from the repository root, after ``make serve`` or ``make test`` set up
``.venv``; needs ``wrk``, e.g. ``apt-get install -y wrk``)::

    .venv/bin/python bench/run.py                # one round, about a minute
    .venv/bin/python bench/run.py --rounds 3     # median of three rounds
    .venv/bin/python bench/run.py --help         # duration, connections, CPUs

Three servers, each one uvicorn worker with httptools and uvloop, each on a
port the OS picked:

- ``library``: the real service (``python -m server serve --demo``), so
  GetBook goes through the router, the auth and error interceptors, the
  domain and a real SQLite read;
- ``minimal connectrpc``: the generated ``LibraryServiceASGIApplication``
  with a handler returning an in-memory ``GetBookResponse``;
- ``bare ASGI``: an ASGI app answering with fixed bytes.

All three send the same book. ``wrk`` POSTs a Connect unary GetBook with a
binary (``application/proto``) and a JSON (``application/json``) body. The
server is pinned to one CPU and wrk to another when there are two or more.
The script prints a markdown table with req/s, p99 and the ratios to the
baselines (the target is GetBook at >= 0.8x the minimal connectrpc handler);
it never asserts timings. It exits non-zero only if a server fails to start
or answers anything but 200. Every process it starts, it stops.
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

from server.gen.library.v1 import library_pb as pb

BASELINES = Path(__file__).resolve().with_name("baselines.py")
GET_BOOK = "/library.v1.LibraryService/GetBook"
LIST_BOOKS = "/library.v1.LibraryService/ListBooks"
CONTENT_TYPES = {"binary": "application/proto", "json": "application/json"}
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

LIBRARY = "library GetBook (SQLite)"
CONNECT = "minimal connectrpc"
BARE = "bare ASGI"


@dataclass(frozen=True)
class Result:
    """One wrk measurement."""

    requests_per_second: float
    p50_ms: float
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


def free_port() -> int:
    """A loopback port the OS picked and nobody listens on right now.

    Not ``--fd``: uvicorn wraps an inherited socket as AF_UNIX, so its TCP
    connections miss TCP_NODELAY and every response waits ~40 ms for a delayed
    ACK (Nagle), which would measure the kernel instead of the server.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    name: str, argv: Sequence[str], cpu: int | None, log: Path, ready: str
) -> Iterator[Server]:
    """Run ``argv + ['--host', '127.0.0.1', '--port', N]`` until the block ends.

    ``ready`` is a path answered with 200 by a JSON POST of ``{}`` once the
    server can serve.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*pin, *argv, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LIBRARY_LOG_LEVEL": "warning"},
        )
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
    if response.book.id != book_id:
        raise RuntimeError(f"{server.name} {encoding}: wrong book {response.book.id}")


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
  io.write(string.format("BENCH %d %d %.1f %.1f %d %d\\n",
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""
    )
    return script


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    server: Server, script: Path, seconds: float, connections: int, cpu: int | None
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
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        server.url + GET_BOOK,
    ]
    cpu_before = cpu_seconds(server.pid)
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu_used = cpu_seconds(server.pid) - cpu_before
    line = next(ln for ln in output.splitlines() if ln.startswith("BENCH "))
    requests, duration_us, p50_us, p99_us, status_errors, socket_errors = line.split()[1:]
    if int(status_errors) or int(socket_errors):
        raise RuntimeError(
            f"{server.name}: {status_errors} non-2xx answers,"
            f" {socket_errors} socket errors\n{output}"
        )
    return Result(
        requests_per_second=int(requests) / (int(duration_us) / 1e6),
        p50_ms=float(p50_us) / 1000,
        p99_ms=float(p99_us) / 1000,
        cpu_us_per_request=cpu_used / int(requests) * 1e6,
    )


def median(results: Sequence[Result]) -> Result:
    """The per-field median over rounds."""
    return Result(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in results),
    )


def table(results: dict[tuple[str, str], Result]) -> str:
    """The markdown table: req/s, latency, and ratios to both baselines."""
    lines = [
        "| server | encoding | req/s | p50 ms | p99 ms | server CPU µs/req"
        " | req/s vs minimal connectrpc | req/s vs bare ASGI |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, encoding), result in results.items():
        rps = result.requests_per_second
        connect = rps / results[(CONNECT, encoding)].requests_per_second
        bare = rps / results[(BARE, encoding)].requests_per_second
        lines.append(
            f"| {name} | {encoding} | {rps:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f}"
            f" | {result.cpu_us_per_request:.1f} | {connect:.2f}x | {bare:.2f}x |"
        )
    return "\n".join(lines)


def cpus(requested_server: int, requested_client: int) -> tuple[int | None, int | None]:
    """The CPUs to pin to, or None when pinning is impossible here."""
    available = os.sched_getaffinity(0)
    if shutil.which("taskset") is None or len(available) < 2:
        return None, None
    if {requested_server, requested_client} <= available:
        return requested_server, requested_client
    first, second = sorted(available)[:2]
    return first, second


def main() -> int:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(
        description="GetBook vs a minimal connectrpc handler vs bare ASGI, one uvicorn worker."
    )
    parser.add_argument("--duration", type=float, default=8, help="seconds measured per case")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=1, help="report the median of N rounds")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    server_cpu, client_cpu = cpus(args.server_cpu, args.client_cpu)
    load_before = os.getloadavg()[0]

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="library-bench-")))
        library = stack.enter_context(
            serving(
                LIBRARY,
                [sys.executable, "-m", "server", "serve", "--demo", "--database", str(work / "db")],
                server_cpu,
                work / "library.log",
                ready="/grpc.health.v1.Health/Check",
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
            servers.append(
                stack.enter_context(
                    serving(
                        name,
                        [sys.executable, str(BASELINES), kind, "--response", answer.hex()],
                        server_cpu,
                        work / f"{kind}.log",
                        ready=GET_BOOK,
                    )
                )
            )

        scripts = {}
        for encoding in CONTENT_TYPES:
            body = request_body(book_id, encoding)
            scripts[encoding] = wrk_script(work, encoding, body)
            for server in servers:
                check(server, encoding, body, book_id)

        rounds: dict[tuple[str, str], list[Result]] = {}
        for round_number in range(1, args.rounds + 1):
            for encoding, script in scripts.items():
                for server in servers:
                    if args.warmup > 0:
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
        f"server pinned to CPU {server_cpu}, wrk to CPU {client_cpu}"
        if server_cpu is not None
        else "no CPU pinning (needs taskset and two CPUs)"
    )
    print(table({case: median(results) for case, results in rounds.items()}))
    print(
        f"\nConnect unary GetBook over HTTP/1.1, one uvicorn worker (httptools, uvloop);"
        f" wrk, 1 thread, {args.connections} connections, {args.duration:g} s per case"
        f" after {args.warmup:g} s warm-up; {pinning}; median of {args.rounds} round(s);"
        f" load average before start {load_before:.2f}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
