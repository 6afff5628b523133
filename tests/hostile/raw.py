"""Raw HTTP/1.1 exchanges with a server under test, as an attacker would send them.

pyvoy answers HTTP/1.1 on its HTTP/2 port too, so one client reaches both transports.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SERVICE = "/library.v1.LibraryService"
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Target:
    """A running server: its transport, address, log and a liveness check."""

    transport: str
    host: str
    port: int
    log: Path
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
    reply = send(target, f"{SERVICE}/GetBook", b'{"id": 1}', JSON, timeout=within)
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
