"""Storage calls as child spans of the RPC that made them, wrapped around any backend."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from server.domain.errors import DomainError
from server.domain.storage import Storage

# Not database work: connecting, closing, and a watcher's idle wait for news.
_UNTRACED = frozenset({"open", "close", "wait_for_events"})


def db_system(database_url: str) -> str:
    """OpenTelemetry's ``db.system`` for the backend the URL names."""
    return "postgresql" if database_url.startswith(("postgres://", "postgresql://")) else "sqlite"


def traced_storage(storage: Storage, system: str) -> Storage:
    """``storage`` with each call a CLIENT span (``db.system``, ``db.operation.name``)."""
    # The proxy forwards every attribute, so it is the Storage it wraps.
    return cast(Storage, _TracedStorage(storage, system))


class _TracedStorage:
    def __init__(self, inner: Storage, system: str) -> None:
        self._inner = inner
        self._system = system
        self._tracer = trace.get_tracer("library.storage")

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name.startswith("_") or name in _UNTRACED or not inspect.iscoroutinefunction(value):
            return value
        traced = self._traced(name, value)
        setattr(self, name, traced)  # found without __getattr__ from now on
        return traced

    def _traced(
        self, operation: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        attributes = {"db.system": self._system, "db.operation.name": operation}

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            # Only inside a traced call: a probe or a background task makes no root spans.
            if not trace.get_current_span().is_recording():
                return await method(*args, **kwargs)
            # Not made current: nothing runs inside a storage call that could be its child.
            span = self._tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=attributes)
            try:
                return await method(*args, **kwargs)
            except DomainError as e:
                # A broken rule (not found, taken ISBN) is an answer, not a failure.
                span.set_attribute("error.type", type(e).__name__)
                raise
            except Exception as e:
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, type(e).__name__))
                raise
            finally:
                span.end()

        return call
