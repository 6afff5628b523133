"""The access log: one line per call, readable text or JSON, never a header value or a body."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from typing import Any

from server.app.telemetry.calls import Call

LOGGER = "library.access"
# W3C traceparent: version, trace id, parent id, flags.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def configure_access_log(log_format: str) -> logging.Logger:
    """The ``library.access`` logger, writing bare lines to stderr (idempotent)."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # Its own lines only: the server's log format would wrap them again.
    logger.propagate = False
    return logger


def trace_id(call: Call) -> str:
    """The server span's trace id, else the one in the client's ``traceparent``, else ``-``."""
    if call.span is not None:
        return format(call.span.get_span_context().trace_id, "032x")
    # Client input: only a well-formed id may reach the line (no spaces, no fake fields).
    match = _TRACEPARENT.fullmatch(call.traceparent or "")
    return match[1] if match else "-"


def fields(call: Call) -> dict[str, Any]:
    """The logged fields of one call, in their order on the line."""
    return {
        "time": timestamp(call.wall_time),
        "procedure": call.procedure,
        "protocol": call.protocol,
        "code": call.code,
        "duration_ms": round(call.duration * 1000, 3),
        "bytes_in": call.bytes_in,
        "bytes_out": call.bytes_out,
        "peer": call.peer,
        "trace_id": trace_id(call),
    }


def timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as UTC ISO 8601 with milliseconds, as the line shows it."""
    whole = int(seconds)
    return f"{_second(whole)}.{int(seconds * 1000) % 1000:03d}Z"


@functools.lru_cache(maxsize=1)
def _second(whole: int) -> str:
    # strftime is most of a line's cost, and every call in one second shares it.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


class AccessLog:
    """A call sink writing the line of each finished call."""

    def __init__(self, log_format: str) -> None:
        self._logger = configure_access_log(log_format)
        self._json = log_format == "json"

    def started(self, call: Call) -> None:
        """Nothing is logged until the call ends."""

    def finished(self, call: Call) -> None:
        """Write the call's line."""
        values = fields(call)
        if self._json:
            line = json.dumps(values, separators=(",", ":"))
        else:
            # The path is the only field a client chooses freely; repr() keeps it on one line.
            values["procedure"] = _printable(call.procedure)
            line = " ".join(f"{name}={value}" for name, value in values.items())
        self._logger.info(line)


def _printable(text: str) -> str:
    return text if text.isprintable() and " " not in text else repr(text)
