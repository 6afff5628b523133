"""Raw HTTP/1.1 exchanges with a server under test, as an attacker would send them.

pyvoy answers HTTP/1.1 on its HTTP/2 port too, so one client reaches both transports.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICE = "/library.v1.LibraryService"
JSON = {"content-type": "application/json"}
NO_SUCH_BOOK = b'{"id": 4611686018427387904}'
"""A GetBook request for a book no test creates: NOT_FOUND is its answer."""


@dataclass(frozen=True)
class Target:
    """A running server: its transport, address, log, process and a liveness check."""

    transport: str
    host: str
    port: int
    log: Path
    pid: int
    alive: Callable[[], bool]

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Reply:
    """An HTTP response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        """The body as a JSON object."""
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def send(
    target: Target,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def get_book_answers(target: Target, within: float) -> float:
    """Call GetBook (NOT_FOUND on an empty catalogue is an answer) and return its latency."""
    started = time.monotonic()
    reply = send(target, f"{SERVICE}/GetBook", NO_SUCH_BOOK, JSON, timeout=within)
    elapsed = time.monotonic() - started
    assert reply.status in (200, 404), reply
    assert elapsed < within, f"GetBook took {elapsed:.2f}s"
    return elapsed


def envelope(payload: bytes, flags: int = 0) -> bytes:
    """One message of a Connect or gRPC-Web stream."""
    return bytes([flags]) + len(payload).to_bytes(4, "big") + payload


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """The (flags, payload) messages of a Connect or gRPC-Web stream body."""
    found = []
    while body:
        assert len(body) >= 5, f"a truncated envelope: {body!r}"
        size = int.from_bytes(body[1:5], "big")
        found.append((body[0], body[5 : 5 + size]))
        body = body[5 + size :]
    return found


def stream_error_code(reply: Reply) -> str:
    """The error code that ends a Connect (JSON) or gRPC-Web stream reply ("" for OK)."""
    assert reply.status == 200, reply
    last_flags, last = envelopes(reply.body)[-1]
    if reply.headers["content-type"].startswith("application/grpc-web"):
        assert last_flags & 0x80, reply
        trailers = dict(
            line.split(":", 1) for line in last.decode().strip().split("\r\n") if ":" in line
        )
        return GRPC_CODES[int(trailers["grpc-status"].strip())]
    assert last_flags & 0x02, reply
    error = json.loads(last).get("error")
    return str(error["code"]) if error else ""


GRPC_CODES = [
    "",
    "canceled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
]
"""Connect's names of gRPC status codes, by number."""


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Envoy runs under the launcher)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        tree.append(current)
        pending.extend(int(child) for child in children)
    return tree


def _status_bytes(pids: list[int], field: str) -> int:
    """The sum of one ``/proc/<pid>/status`` memory field (in kB there) over ``pids``."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1]) * 1024
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants now."""
    return _status_bytes(_process_tree(pid), "VmRSS")


@contextlib.contextmanager
def peak_growth(pid: int) -> Iterator[Callable[[], int]]:
    """How far, at its peak, the memory of ``pid``'s processes grew within the block.

    Each process's high-water mark is reset first (``clear_refs``), so memory
    grown and given back during the block still counts, as a final RSS would not.
    """
    pids = _process_tree(pid)
    for each in pids:
        with contextlib.suppress(FileNotFoundError):
            Path(f"/proc/{each}/clear_refs").write_text("5")
    before = _status_bytes(pids, "VmRSS")
    yield lambda: _status_bytes(pids, "VmHWM") - before


def connect(target: Target, timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection to the server."""
    return socket.create_connection((target.host, target.port), timeout=timeout)


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``within``."""
    deadline = time.monotonic() + within
    received = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the server kept the connection open for {within}s: {received[:200]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def send_while_open(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``; False once the server has closed the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True
