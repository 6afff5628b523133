"""One record per HTTP request, filled in by an ASGI middleware that sees every protocol."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.app.telemetry.codes import Decompressors, call_code, protocol_of


@dataclass(slots=True)
class Call:
    """What the telemetry knows about one request; ``code`` is set when it has ended."""

    procedure: str
    """``/package.Service/Method`` for a known RPC, else the request path."""
    protocol: str
    """``connect``, ``grpc``, ``grpc-web``, or ``http`` for anything but a known RPC."""
    peer: str
    traceparent: str | None
    carrier: dict[str, str] | None = None
    """The request's trace-context headers (``traceparent``, ``tracestate``, ``baggage``)."""
    host: bytes | None = None
    """The request's ``Host`` header, if it has one."""
    scheme: str = "http"
    started: float = field(default_factory=time.perf_counter)
    wall_time: float = field(default_factory=time.time)
    duration: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    http_status: int = 0
    grpc_status: str | None = None
    encoding: str | None = None
    """The response's stream compression (``grpc-encoding``, ``connect-content-encoding``)."""
    last_body: bytes = b""
    error_code: str | None = None
    """The Connect code an interceptor saw the handler fail with."""
    error: Exception | None = None
    """The exception the handler failed with, as that interceptor saw it."""
    code: str = ""
    span: Span | None = None
    context_token: Token[Context] | None = None
    """The token that made ``span`` current, to restore the context when the call ends."""

    @property
    def is_rpc(self) -> bool:
        """Whether this is a call of a known RPC method (metrics are kept for these only)."""
        return self.protocol != "http"

    def note_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Keep the gRPC status (headers of a trailers-only response, or trailers), and the
        compression a status message in the body would be in."""
        for name, value in headers:
            if name == b"grpc-status":
                self.grpc_status = value.decode("latin-1")
            elif name in _ENCODING_HEADERS:
                self.encoding = value.decode("latin-1")


_ENCODING_HEADERS = frozenset({b"grpc-encoding", b"connect-content-encoding"})


current_call: ContextVar[Call | None] = ContextVar("current_call", default=None)
"""The call being served, for interceptors to add what only they can see."""


class CallSink(Protocol):
    """Something told about every call as it starts and once it has ended."""

    def started(self, call: Call) -> None:
        """The request arrived."""

    def finished(self, call: Call) -> None:
        """The response was sent (or the request failed); ``call.code`` is set."""


class ObservedCalls:
    """ASGI middleware: counts bytes and reads status codes on the wire, then tells the sinks.

    It sits outside everything else, so a call's duration and bytes are what
    the client saw, and statuses written by connectrpc itself (deadlines,
    unknown compressions, 404s) are counted like those raised by handlers.
    """

    def __init__(
        self,
        app: ASGIApp,
        procedures: frozenset[str],
        sinks: Sequence[CallSink],
        decompressors: Decompressors,
    ) -> None:
        self._app = app
        self._procedures = procedures
        self._sinks = sinks
        self._decompressors = decompressors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request and report it."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        call = _start(scope, self._procedures)
        for sink in self._sinks:
            sink.started(call)

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                call.bytes_in += len(message.get("body", b""))
            return message

        def watching_send(message: Message) -> Awaitable[None]:
            # The server's own send, returned: no coroutine of this one per message.
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body", b"")
                if body:
                    call.bytes_out += len(body)
                    call.last_body = body
            elif kind == "http.response.start":
                call.http_status = message["status"]
                if call.is_rpc:
                    call.note_headers(message.get("headers", ()))
            elif kind == "http.response.trailers":
                call.note_headers(message.get("headers", ()))
            return send(message)

        token = current_call.set(call)
        try:
            await self._app(scope, counting_receive, watching_send)
        finally:
            current_call.reset(token)
            call.duration = time.perf_counter() - call.started
            call.code = call_code(call, self._decompressors)
            for sink in self._sinks:
                sink.finished(call)


# W3C Trace Context and Baggage: what OpenTelemetry's installed propagators read.
_CARRIED = frozenset({b"traceparent", b"tracestate", b"baggage"})


def _start(scope: Scope, procedures: frozenset[str]) -> Call:
    path: str = scope["path"]
    content_type = host = carrier = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"host":
            host = value
        elif name in _CARRIED:
            if carrier is None:
                carrier = {}
            carrier[name.decode()] = value.decode("latin-1")
    client = scope.get("client")
    return Call(
        procedure=path,
        protocol=protocol_of(content_type) if _is_rpc(scope, path, procedures) else "http",
        peer=f"{client[0]}:{client[1]}" if client else "-",
        traceparent=carrier.get("traceparent") if carrier else None,
        carrier=carrier,
        host=host,
        scheme=scope.get("scheme", "http"),
    )


def _is_rpc(scope: Scope, path: str, procedures: frozenset[str]) -> bool:
    # A CORS preflight (OPTIONS) to an RPC's path is not a call of it.
    return path in procedures and scope["method"] in ("POST", "GET")
