"""Storage calls as child spans of the RPC that made them, wrapped around any backend."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager, nullcontext
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
        # A plain value (``committed_head``, read on every cached GetBook) passes straight on.
        if not callable(value) or name.startswith("_") or name in _UNTRACED:
            return value
        if inspect.iscoroutinefunction(value):
            traced: Any = self._traced(name, value)
        elif inspect.isasyncgenfunction(value):
            traced = self._traced_pages(name, value)
        else:
            return value
        setattr(self, name, traced)  # found without __getattr__ from now on
        return traced

    def _traced(
        self, operation: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            # Only inside a traced call: a probe or a background task makes no root spans.
            if not trace.get_current_span().is_recording():
                return await method(*args, **kwargs)
            with self._span(operation):
                return await method(*args, **kwargs)

        return call

    def _traced_pages(
        self, operation: str, method: Callable[..., AsyncGenerator[Any, None]]
    ) -> Callable[..., AsyncGenerator[Any, None]]:
        """A paged read (a snapshot) as one span, from its first page to its last."""

        @functools.wraps(method)
        async def pages(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
            traced = trace.get_current_span().is_recording()
            with self._span(operation) if traced else nullcontext():
                async with aclosing(method(*args, **kwargs)) as inner:
                    async for page in inner:
                        yield page

        return pages

    @contextmanager
    def _span(self, operation: str) -> Iterator[None]:
        attributes = {"db.system": self._system, "db.operation.name": operation}
        # Not made current: nothing runs inside a storage call that could be its child.
        span = self._tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=attributes)
        try:
            yield
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
