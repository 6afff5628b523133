"""Lean HTTP/1.1 Connect clients for the benchmark: thousands of WatchBooks streams, unary calls.

Hand-written on asyncio so that one client core can hold 10,000 streams and
keep 32 connections busy; a general HTTP client would measure itself. They
speak exactly what the servers under test need: POST, keep-alive, a response
with Content-Length or chunked, Connect envelopes.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field


def envelope(message: bytes, flags: int = 0) -> bytes:
    """One Connect streaming frame."""
    return struct.pack(">BI", flags, len(message)) + message


def request_bytes(host: str, path: str, content_type: str, body: bytes, token: str = "") -> bytes:
    """A keep-alive POST, ready to write."""
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n"
        f"connect-protocol-version: 1\r\n{auth}content-length: {len(body)}\r\n\r\n"
    ).encode() + body


class WatchStream(asyncio.Protocol):
    """One server-streaming call; records when each data frame arrives."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._buffer = bytearray()
        self._body = bytearray()
        self._headers_done = False
        self._chunk_left = -1
        self.status = 0
        self.arrivals: list[float] = []
        self.ended = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the request at once."""
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        """The server (or we) closed the stream."""
        self.ended = True

    def data_received(self, data: bytes) -> None:
        """Parse the response head, the chunked body and the frames in it."""
        now = time.perf_counter()
        self._buffer += data
        if not self._headers_done:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self._buffer[9:12])
            del self._buffer[: end + 4]
            self._headers_done = True
        self._dechunk()
        while len(self._body) >= 5:
            flags, size = struct.unpack_from(">BI", self._body)
            if len(self._body) < 5 + size:
                return
            del self._body[: 5 + size]
            if flags & 0x02:
                self.ended = True
            else:
                self.arrivals.append(now)

    def _dechunk(self) -> None:
        while True:
            if self._chunk_left < 0:
                line_end = self._buffer.find(b"\r\n")
                if line_end < 0:
                    return
                self._chunk_left = int(self._buffer[:line_end], 16)
                del self._buffer[: line_end + 2]
                if self._chunk_left == 0:
                    self.ended = True
                    return
            if len(self._buffer) < self._chunk_left + 2:
                return
            self._body += self._buffer[: self._chunk_left]
            del self._buffer[: self._chunk_left + 2]
            self._chunk_left = -1


@dataclass
class Caller:
    """One keep-alive connection for unary calls, with the latency of each."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    latencies: list[float] = field(default_factory=list)

    @classmethod
    async def open(cls, host: str, port: int) -> Caller:
        """Connect."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; its HTTP status and body."""
        started = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length >= 0:
            body = await self.reader.readexactly(length)
        else:
            body = await self._read_chunked()
        self.latencies.append(time.perf_counter() - started)
        return status, body

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int(await self.reader.readuntil(b"\r\n"), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return bytes(body)
            body += (await self.reader.readexactly(size + 2))[:size]

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()
