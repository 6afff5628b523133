"""uvicorn's httptools protocol with the bounds it lacks: header size, header time, connections.

uvicorn with httptools reads headers of any size (httptools buffers a header
until it is complete) and waits forever for a request that trickles in, so a
few slow clients can hold every descriptor and gigabytes of memory. This
subclass of uvicorn's own protocol (uvicorn has no hook for these) adds:

- a bound on the request line plus headers: past it, 431 and close (a
  request pipelined behind another in one read is measured as parsed);
- a time limit on receiving them, from the connection's first byte or the
  request's: past it, 408 and close (idle connections between requests are
  closed by uvicorn's keep-alive timeout, which is ``idle_timeout``);
- a time limit between two reads of a request's body (``body_timeout``; the
  clock stops while uvicorn itself has paused reading for a slow app): past
  it, 408 and close, or just close once the response has started;
- a cap on open connections per worker: past it, a new connection gets 503
  with ``Retry-After`` at once, and the connections already open keep being served;
- TCP keepalive on each connection (``server.app.keepalive``), so a quiet
  WatchBooks stream whose client vanished is closed.

Each refusal is logged as a warning with the peer's address (at most once a
second per kind, with the count of the ones not logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from server.app.keepalive import keepalive_options
from server.app.settings import Settings

log = logging.getLogger("library")

_HEADERS_END = b"\r\n\r\n"
# A refused connection reads and drops what the client still sends for this
# long before closing, so the client reads the refusal instead of a reset.
_LINGER_SECONDS = 1.0
_HEADERS_SLOW = (408, "the request headers took too long")
_BODY_SLOW = (408, "the request body stopped arriving")


@functools.cache
def _settings() -> Settings:
    return Settings.from_workers_env()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with bounded headers, header time and connection count."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = _settings()
        self._max_header_bytes = settings.max_header_bytes
        self._header_timeout = settings.header_timeout
        self._body_timeout = settings.body_timeout
        self._max_connections = settings.max_connections
        self._keepalive = keepalive_options(settings.idle_timeout)
        self._reading_headers = True
        self._header_bytes = 0
        self._tail = b""  # The last bytes seen, for a header end split across reads.
        # A read can hold a whole request and the start of the next (pipelining):
        # the raw count above misses the bytes of a request that began mid-read,
        # so that request's head is measured from httptools' callbacks once
        # complete (``_uncounted``), and its header clock starts after the read.
        self._after_message = False  # A request ended earlier in the current read.
        self._uncounted = False  # The request being read began mid-read.
        # The running clock: headers (since their first byte) or body (since its
        # last read); None when neither is being read. One timer per connection
        # checks it, re-armed only when it fires or an earlier deadline starts,
        # so a busy keep-alive connection schedules no timer per request. A
        # request that arrives whole in one read starts no clock at all: clocks
        # start only for what is still missing once a read has been parsed.
        self._clock_since: float | None = None
        self._clock_limit = self._header_timeout
        self._clock_refusal = _HEADERS_SLOW
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        # A later pipelined request's refusal, sent once the answers before it are.
        self._refusal_after_answers: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse past the connection cap; otherwise start the header clock."""
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            self._refuse(503, "the server has too many open connections; retry soon")
            return
        sock = transport.get_extra_info("socket")
        # Not by the socket's family: uvicorn wraps an inherited TCP socket as AF_UNIX
        # (a real Unix socket refuses the TCP options, and keeps the rest).
        for level, option, value in self._keepalive:
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, value)
        self._start_clock(self._header_timeout, _HEADERS_SLOW)

    def data_received(self, data: bytes) -> None:
        """Count header bytes before httptools buffers them; refuse past the bound."""
        if self._refused:
            return
        if self._reading_headers:
            counted = self._header_bytes + len(data)
            if counted > self._max_header_bytes:
                # The read may hold the headers' end and body bytes after it.
                seen = self._tail + data
                end = seen.find(_HEADERS_END)
                if end >= 0:
                    counted = self._header_bytes + end + len(_HEADERS_END) - len(self._tail)
                if counted > self._max_header_bytes:
                    self._refuse(431, "request headers are too large")
                    return
            self._header_bytes = counted
            self._tail = (self._tail + data if len(data) < 3 else data)[-3:]
        elif self._clock_since is not None:
            self._clock_since = self.loop.time()  # The body moved: its idle clock restarts.
        # The base class's methods by name, here and below: cheaper than super()
        # on every request.
        HttpToolsProtocol.data_received(self, data)
        if self._after_message and self._uncounted and self._reading_headers:
            self._tail = data[-3:]  # The unfinished request began in this read.
        self._after_message = False
        if self._clock_since is None and not self._refused:
            if not self._reading_headers:
                self._start_clock(self._body_timeout, _BODY_SLOW)
            elif self._header_bytes or self._uncounted:
                self._start_clock(self._header_timeout, _HEADERS_SLOW)

    def on_message_begin(self) -> None:
        """Note whether this request began after another one in the same read."""
        self._uncounted = self._after_message
        HttpToolsProtocol.on_message_begin(self)

    def on_headers_complete(self) -> None:
        """Bound a pipelined request's head; stop the header clock; the request goes to the app."""
        if self._refused:
            return  # A request before this one in the read was refused.
        if self._uncounted:
            self._uncounted = False
            if self._head_bytes() > self._max_header_bytes:
                self._refuse(431, "request headers are too large")
                return
        self._reading_headers = False
        self._header_bytes = 0
        self._tail = b""
        self._clock_since = None
        HttpToolsProtocol.on_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        """Hand body bytes to the request's cycle, none of a refused request's."""
        if self._refused:
            return  # The cycle is an earlier request's: the bytes are not its.
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        """Stop the body clock; the next bytes start a new request's headers."""
        if self._refused:
            return
        self._clock_since = None
        HttpToolsProtocol.on_message_complete(self)
        self._reading_headers = True
        self._after_message = True

    def _head_bytes(self) -> int:
        """The request line plus headers as httptools parsed them (spaces around values aside)."""
        line = len(self.parser.get_method()) + len(self.url) + len(b"  HTTP/1.1\r\n")
        return line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _start_clock(self, limit: float, refusal: tuple[int, str]) -> None:
        self._clock_since = self.loop.time()
        self._clock_limit = limit
        self._clock_refusal = refusal
        deadline = self._clock_since + limit
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check_clock)

    def _check_clock(self) -> None:
        self._timer = None
        if self._clock_since is None or self._refused:
            return  # Re-armed when the next clock starts.
        now = self.loop.time()
        if self.flow.read_paused:
            self._clock_since = now  # uvicorn stopped reading, not the client.
        left = self._clock_since + self._clock_limit - now
        if left > 0:
            self._timer = self.loop.call_later(left, self._check_clock)
            return
        self._refuse(*self._clock_refusal)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` unless a response is under way, then close.

        A request refused before its headers were read, behind answers still due
        (pipelining), is refused after them: each answer goes to its own request.
        """
        self._refused = True
        self._clock_since = None
        _warn(status, message, self.client)
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            if self._reading_headers:
                self._refusal_after_answers = (status, message)
                return
            if self.cycle.response_started:
                self.transport.close()  # Mid-response: nothing else may be written.
                return
            # The app is still reading this request: it sees a disconnect, and
            # whatever it answers is dropped, so the refusal is all that is sent.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._send_refusal(status, message)

    def on_response_complete(self) -> None:
        """Start the next pipelined request, or send a refusal due once no answer is."""
        HttpToolsProtocol.on_response_complete(self)
        refusal = self._refusal_after_answers
        # The cycle is the last request read before the refused one: the last answer due.
        last = self.cycle
        if refusal is not None and last is not None and last.response_complete:
            self._refusal_after_answers = None
            self._send_refusal(*refusal)

    def _send_refusal(self, status: int, message: str) -> None:
        body = message.encode()
        retry = b"retry-after: 1\r\n" if status == 503 else b""
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\n" % len(body)
            + retry
            + b"connection: close\r\n\r\n"
            + body
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if status == 503:
            # Refused on arrival, before the client sent anything to discard: close
            # now, so a flood past the cap holds no descriptors while it lingers.
            self.transport.close()
            return
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)


class _RateLimitedWarnings:
    """At most one warning a second per status, counting the ones left out."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._skipped: dict[int, int] = {}

    def __call__(self, status: int, message: str, peer: tuple[str, int] | None) -> None:
        now = time.monotonic()
        if now - self._last.get(status, -1.0) < 1.0:
            self._skipped[status] = self._skipped.get(status, 0) + 1
            return
        skipped = self._skipped.pop(status, 0)
        self._last[status] = now
        more = f" (and {skipped} more since the last warning)" if skipped else ""
        log.warning("refused with %d: %s; peer %s%s", status, message, _peer(peer), more)


def _peer(peer: tuple[str, int] | None) -> str:
    return f"{peer[0]}:{peer[1]}" if peer else "unknown"


_warn = _RateLimitedWarnings()
