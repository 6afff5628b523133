"""The access log: one line per call, readable text or JSON, never a header value or a body."""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import re
import select
import sys
import time
from json.encoder import encode_basestring_ascii
from typing import TextIO

from server.app.telemetry.calls import Call

log = logging.getLogger("library")

# At most one warning a minute while writes fail.
_LOSS_WARNING_EVERY = 60.0
MAX_BUFFERED = 64 * 1024
"""Bytes of lines held for the end of the event loop's pass; past it they are written."""
ATOMIC_WRITE = select.PIPE_BUF
"""The most bytes one write may carry: a pipe never splits or interleaves a write this small."""
MAX_PATH_CHARS = 512
"""A longer request path is cut to this many characters on the line (then ``...``).

Escaped, a cut path still leaves every line under ATOMIC_WRITE (JSON spells a
character in at most 6 bytes), and a client cannot grow the log by 64 KiB a request.
"""
# W3C traceparent: version, trace id, parent id, flags.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id(call: Call) -> str:
    """The server span's trace id, else the one in the client's ``traceparent``, else ``-``."""
    if call.span is not None:
        return format(call.span.get_span_context().trace_id, "032x")
    # Client input: only a well-formed id may reach the line (no spaces, no fake fields).
    match = _TRACEPARENT.fullmatch(call.traceparent or "")
    return match[1] if match else "-"


def text_line(call: Call) -> str:
    """The call's line as ``name=value`` pairs (the README lists the fields)."""
    # The path is the only field a client chooses freely; repr() keeps it on one line.
    return (
        f"time={timestamp(call.wall_time)} procedure={_printable(_cut(call.procedure))}"
        f" protocol={call.protocol} code={call.code}"
        f" duration_ms={round(call.duration * 1000, 3)}"
        f" bytes_in={call.bytes_in} bytes_out={call.bytes_out}"
        f" peer={call.peer} trace_id={trace_id(call)}"
    )


def json_line(call: Call) -> str:
    """The call's line as one JSON object (ASCII, no spaces), fields as in ``text_line``."""
    # f-strings: a third of the cost of str.format with nine arguments.
    quoted = encode_basestring_ascii
    return (
        f'{{"time":{quoted(timestamp(call.wall_time))},"procedure":{quoted(_cut(call.procedure))}'
        f',"protocol":{quoted(call.protocol)},"code":{quoted(call.code)}'
        f',"duration_ms":{round(call.duration * 1000, 3)}'
        f',"bytes_in":{call.bytes_in},"bytes_out":{call.bytes_out}'
        f',"peer":{quoted(call.peer)},"trace_id":{quoted(trace_id(call))}}}'
    )


def timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as UTC ISO 8601 with milliseconds, as the line shows it."""
    whole = int(seconds)
    return f"{_second(whole)}.{int(seconds * 1000) % 1000:03d}Z"


@functools.lru_cache(maxsize=1)
def _second(whole: int) -> str:
    # strftime is most of a line's cost, and every call in one second shares it.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _cut(path: str) -> str:
    return path if len(path) <= MAX_PATH_CHARS else f"{path[:MAX_PATH_CHARS]}..."


def _printable(text: str) -> str:
    return text if text.isprintable() and " " not in text else repr(text)


class LineWriter:
    """Writes lines to ``stream``, those of one pass of the event loop together.

    Python's logging cost ~12 µs a line (a record, a lock, a formatter, and a
    write and a flush per line); here the first line of a pass schedules the
    writes at the end of it. Each write is whole lines of at most PIPE_BUF
    bytes, so on a pipe shared by several workers it is never split or mixed
    with another's. At most ``max_buffered`` bytes wait: past that they are
    written at once. Outside an event loop a line is written at once; ``close``
    (the app's shutdown, else the interpreter's exit) writes what is left. A
    failed write loses its lines, never the call.
    """

    def __init__(self, stream: TextIO, max_buffered: int = MAX_BUFFERED) -> None:
        self._stream = stream
        self._max_buffered = max_buffered
        self._lines: list[str] = []
        self._buffered = 0
        self._scheduled = False
        self.lost = 0
        """Lines that could not be written."""
        self._warned_at: float | None = None
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        """Write ``line`` (without its newline) at the end of this pass of the loop."""
        self._lines.append(line)
        self._buffered += self._size(line)
        if self._buffered > self._max_buffered:
            self.flush()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            loop.call_soon(self._flush_scheduled)
            self._scheduled = True

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write every line held."""
        lines = self._lines
        self._lines = []
        self._buffered = 0
        chunk: list[str] = []
        size = 0
        for line in lines:
            line_size = self._size(line)
            if chunk and size + line_size > ATOMIC_WRITE:
                self._write(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += line_size
        if chunk:
            self._write(chunk)

    def _size(self, line: str) -> int:
        """Bytes ``line`` and its newline take on the stream."""
        if line.isascii():
            return len(line) + 1
        # Rare (a path in the text format): backslashreplace is the longest any error
        # handler makes it, and never fails.
        encoding = getattr(self._stream, "encoding", None) or "utf-8"
        return len(line.encode(encoding, "backslashreplace")) + 1

    def _write(self, lines: list[str]) -> None:
        lines.append("")
        try:
            self._stream.write("\n".join(lines))
            self._stream.flush()
        except (OSError, ValueError, UnicodeError) as e:
            # A full disk or a closed pipe must not fail the calls being logged.
            self.lost += len(lines) - 1
            now = time.monotonic()
            if self._warned_at is None or now - self._warned_at >= _LOSS_WARNING_EVERY:
                self._warned_at = now
                log.warning("access log: %d lines lost so far: %s", self.lost, e)

    def close(self) -> None:
        """Write what is left (the exit hook stays, for calls that end after this)."""
        self.flush()


class AccessLog:
    """A call sink writing the line of each finished call to stderr."""

    def __init__(self, log_format: str) -> None:
        self._line = json_line if log_format == "json" else text_line
        self.writer = LineWriter(sys.stderr)

    def started(self, call: Call) -> None:
        """Nothing is logged until the call ends."""

    def finished(self, call: Call) -> None:
        """Write the call's line."""
        self.writer.write(self._line(call))

    def close(self) -> None:
        """Write the lines still held (at shutdown)."""
        self.writer.close()
