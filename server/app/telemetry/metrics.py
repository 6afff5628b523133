"""The Prometheus metrics each server process keeps (served by ``metrics_endpoint``).

Every process writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode), so one scrape sums all workers; gauges say how to combine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from connectrpc.request import RequestContext
from prometheus_client import Counter, Gauge, Histogram

from server.app.telemetry.calls import Call
from server.domain.storage import Storage

log = logging.getLogger("library.telemetry")

WATCH_BOOKS = "/library.v1.LibraryService/WatchBooks"
SAMPLE_SECONDS = 1.0
# From 1 ms (a cached GetBook) to 10 s (a slow import); streams land in +Inf.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RpcMetrics:
    """The metrics, created once per process when the endpoint is on."""

    def __init__(self) -> None:
        self.calls = Counter(
            "library_rpc_calls",
            "RPCs handled, by method, protocol and code",
            ["method", "protocol", "code"],
        )
        self.duration = Histogram(
            "library_rpc_duration_seconds",
            "How long RPCs took, from request to the last byte of the response",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "library_rpc_in_flight",
            "RPCs being handled now",
            ["method"],
            multiprocess_mode="livesum",
        )
        self.watch_streams = Gauge(
            "library_watch_streams_open",
            "WatchBooks streams open now",
            multiprocess_mode="livesum",
        )
        self.watch_lag = Gauge(
            "library_watch_lag_revisions",
            "How many revisions the slowest watcher is behind the newest one this process saw",
            multiprocess_mode="livemax",
        )
        self.pool_size = Gauge(
            "library_db_pool_connections",
            "PostgreSQL connections open in the pool",
            multiprocess_mode="livesum",
        )
        self.pool_in_use = Gauge(
            "library_db_pool_connections_in_use",
            "PostgreSQL pool connections lent out now",
            multiprocess_mode="livesum",
        )


class RpcMetricsSink:
    """A call sink: counts, times and tracks in-flight RPCs and open watches."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics
        # Labelled children, looked up once: labels() takes a lock and builds a key
        # on every call. Both are bounded: methods are the server's, codes are 17.
        self._in_flight: dict[str, Any] = {}
        self._outcomes: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def started(self, call: Call) -> None:
        """One more call in flight."""
        if call.is_rpc:
            self._in_flight_of(call.procedure).inc()
            if call.procedure == WATCH_BOOKS:
                self._metrics.watch_streams.inc()

    def finished(self, call: Call) -> None:
        """Count and time the call by its code."""
        if not call.is_rpc:
            return
        key = (call.procedure, call.protocol, call.code)
        outcome = self._outcomes.get(key)
        if outcome is None:
            method = call.procedure[1:]
            outcome = (
                self._metrics.calls.labels(method, call.protocol, call.code),
                self._metrics.duration.labels(method, call.code),
            )
            self._outcomes[key] = outcome
        calls, duration = outcome
        calls.inc()
        duration.observe(call.duration)
        # Counted first, so a scrape never sees a call neither in flight nor done.
        self._in_flight_of(call.procedure).dec()
        if call.procedure == WATCH_BOOKS:
            self._metrics.watch_streams.dec()

    def _in_flight_of(self, procedure: str) -> Any:
        gauge = self._in_flight.get(procedure)
        if gauge is None:
            gauge = self._in_flight[procedure] = self._metrics.in_flight.labels(procedure[1:])
        return gauge


class WatchProgress:
    """A server-stream interceptor: the revision each open WatchBooks stream last sent.

    The head is the newest revision any watcher here was sent, so the lag is
    how far the slowest watcher (a slow client, a stalled send) trails it.
    """

    def __init__(self) -> None:
        self._last_sent: dict[int, int] = {}
        self._ids = itertools.count()
        self.head = 0

    def lag(self) -> int:
        """Revisions between the head and the slowest open watcher."""
        return self.head - min(self._last_sent.values(), default=self.head)

    async def intercept_server_stream(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], AsyncIterator[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]:
        """Pass every message on, noting the revision of each WatchBooks event."""
        watch = ctx.method.name == "WatchBooks"
        stream = next(self._ids)
        if watch:
            # A snapshot (0) starts at the head; a resume starts where the client left off.
            self._last_sent[stream] = request.since_revision or self.head
        responses = call_next(request, ctx)
        try:
            async for response in responses:
                if watch:
                    revision = response.event.revision
                    self._last_sent[stream] = revision
                    self.head = max(self.head, revision)
                yield response
        finally:
            self._last_sent.pop(stream, None)
            await responses.aclose()  # type: ignore[attr-defined]


async def sample_gauges(
    metrics: RpcMetrics, watches: WatchProgress, storage: Storage, head: Callable[[], int]
) -> None:
    """Refresh the gauges nothing else updates: watch lag and the database pool.

    ``head`` is the newest revision the process's event hub has handed out, so
    the lag also shows watchers that stalled while nobody else was sent anything.
    """
    while True:
        try:
            watches.head = max(watches.head, head())
            metrics.watch_lag.set(watches.lag())
            usage = storage.pool_usage
            if usage is not None:
                metrics.pool_size.set(usage[0])
                metrics.pool_in_use.set(usage[1])
        except Exception:
            # Gauges that stop moving would mislead; say why and keep sampling.
            log.exception("cannot sample the watch and pool gauges")
        await asyncio.sleep(SAMPLE_SECONDS)
