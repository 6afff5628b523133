"""Hands a handler's error code to the call record, where the wire may hide it (compression)."""

from __future__ import annotations

from typing import Any

from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from server.app.telemetry.calls import current_call


def error_code(error: Exception) -> str:
    """The Connect code a client gets for ``error``."""
    return error.code.value if isinstance(error, ConnectError) else "unknown"


class ErrorCodes:
    """A metadata interceptor (any kind of RPC): notes the code a call ended with."""

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        """Nothing to do before the handler."""

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        """Record the code (and the exception) of a failed call."""
        if error is not None and (call := current_call.get()) is not None:
            call.error_code = error_code(error)
            call.error = error
