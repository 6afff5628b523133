"""The one place that maps errors to Connect errors, for every kind of RPC.

Domain errors get the code of the nearest class in their hierarchy that has one
(a subclass of NotFound is NOT_FOUND) and their message, cut to a bounded length
so that no error grows with the input (grpc-message is a header; gRPC clients
refuse headers past 8 KiB). Anything else is a bug: it is logged with its
traceback and the client sees INTERNAL with a generic message, since connectrpc
would otherwise send the exception's text as UNKNOWN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from server.domain import errors

log = logging.getLogger("library")

REQ = TypeVar("REQ")
RES = TypeVar("RES")

_CODES: dict[type[errors.DomainError], Code] = {
    errors.InvalidArgument: Code.INVALID_ARGUMENT,
    errors.NotFound: Code.NOT_FOUND,
    errors.AlreadyExists: Code.ALREADY_EXISTS,
    errors.FailedPrecondition: Code.FAILED_PRECONDITION,
    errors.Unauthenticated: Code.UNAUTHENTICATED,
    errors.PermissionDenied: Code.PERMISSION_DENIED,
    errors.OutOfRange: Code.OUT_OF_RANGE,
    errors.Unavailable: Code.UNAVAILABLE,
}


def to_connect_error(error: Exception) -> ConnectError:
    """The Connect error a client sees for ``error``, which is not one already."""
    if isinstance(error, errors.DomainError):
        return ConnectError(_code_of(type(error)), errors.bounded_message(error.message))
    log.error("unexpected error in a handler", exc_info=error)
    return ConnectError(Code.INTERNAL, "internal error; the server log has the details")


def _code_of(kind: type[errors.DomainError]) -> Code:
    for cls in kind.__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return Code.INTERNAL  # A DomainError that names no rule of its own.


class BoundedErrorMessages:
    """Cuts every error message to a bounded length, whatever raised it.

    connectrpc quotes client input in some of its own errors (an unknown
    compression name, a bad timeout); as the first metadata interceptor of an
    app, this sees every error after the request's headers were accepted.
    """

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        """Nothing to do before the call."""

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        """Replace an error whose message is too long by the same error, cut."""
        if isinstance(error, ConnectError):
            message = errors.bounded_message(error.message)
            if message is not error.message:
                raise ConnectError(error.code, message, details=error.details) from error


# Request headers connectrpc parses before any interceptor runs, and quotes
# when they are malformed. No valid value comes near this length, so cutting
# longer ones keeps them as invalid as they were and their errors short. Not a
# limit (no valid request is refused by it; header bytes are bounded by
# max_header_bytes): it only keeps errors raised before BoundedErrorMessages
# within the smallest message bound the settings allow.
PROTOCOL_HEADERS = frozenset(
    {
        b"connect-protocol-version",
        b"connect-timeout-ms",
        b"grpc-timeout",
        b"content-encoding",
        b"connect-content-encoding",
        b"grpc-encoding",
    }
)
PROTOCOL_HEADER_BYTES = 64


def cut_protocol_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with PROTOCOL_HEADERS values cut to PROTOCOL_HEADER_BYTES.

    Returns ``headers`` itself when nothing needs cutting, as on every normal call.
    """
    for name, value in headers:
        if len(value) > PROTOCOL_HEADER_BYTES and name in PROTOCOL_HEADERS:
            return [
                (name, value[:PROTOCOL_HEADER_BYTES] if name in PROTOCOL_HEADERS else value)
                for name, value in headers
            ]
    return headers


class DomainErrorInterceptor:
    """Turns whatever a handler raises into a ConnectError with the right code.

    Each method returns the mapping coroutine or generator itself: no frame of
    its own around it on every call.
    """

    def intercept_unary(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], Awaitable[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> Coroutine[Any, Any, RES]:
        """Map errors of a unary call."""
        return _mapped_call(call_next, request, ctx)

    def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterator[REQ], RequestContext[Any, Any]], Awaitable[RES]],
        request: AsyncIterator[REQ],
        ctx: RequestContext[Any, Any],
    ) -> Coroutine[Any, Any, RES]:
        """Map errors of a client stream."""
        return _mapped_call(call_next, request, ctx)

    def intercept_server_stream(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], AsyncIterator[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[RES]:
        """Map errors of a server stream, before or between messages."""
        return _mapped(call_next(request, ctx))

    def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[REQ], RequestContext[Any, Any]], AsyncIterator[RES]],
        request: AsyncIterator[REQ],
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[RES]:
        """Map errors of a bidirectional stream."""
        return _mapped(call_next(request, ctx))


async def _mapped_call(
    call_next: Callable[[REQ, RequestContext[Any, Any]], Awaitable[RES]],
    request: REQ,
    ctx: RequestContext[Any, Any],
) -> RES:
    try:
        return await call_next(request, ctx)
    except ConnectError:
        raise
    except Exception as e:
        raise to_connect_error(e) from e


async def _mapped(responses: AsyncIterator[RES]) -> AsyncIterator[RES]:
    try:
        async for response in responses:
            yield response
    except ConnectError:
        raise
    except Exception as e:
        raise to_connect_error(e) from e
    finally:
        await _aclose(responses)


async def _aclose(stream: AsyncIterator[Any]) -> None:
    # Closing a wrapping generator does not close the one it wraps; without
    # this the handler's cleanup would wait for the garbage collector.
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
