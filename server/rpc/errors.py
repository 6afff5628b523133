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
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from server.domain import errors

log = logging.getLogger("library")

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


class ConnectErrors:
    """A metadata interceptor: every error a call ends with, as a Connect error, cut short.

    A handler's error gets its code from ``to_connect_error``. connectrpc quotes
    client input in some of its own errors (an unknown compression name, a bad
    timeout); as the first metadata interceptor of an app, this sees every error
    after the request's headers were accepted and cuts its message. Mapping in
    ``on_end``, which connectrpc lets replace the error, costs a call no wrapper
    around its handler or stream.
    """

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        """Nothing to do before the call."""

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        """Replace the error by its Connect error, its message cut."""
        if error is None:
            return
        if not isinstance(error, ConnectError):
            raise to_connect_error(error) from error
        message = errors.bounded_message(error.message)
        if message is not error.message:
            raise ConnectError(error.code, message, details=error.details) from error


# Request headers connectrpc parses before any interceptor runs, and quotes
# when they are malformed. No valid value comes near this length, so cutting
# longer ones keeps them as invalid as they were and their errors short. Not a
# limit (no valid request is refused by it; header bytes are bounded by
# max_header_bytes): it only keeps errors raised before ConnectErrors
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
