"""Access log, Prometheus metrics, OpenTelemetry traces and probes, as the settings ask.

``Telemetry`` is what one server process observes. Whatever is off costs
nothing: with no metrics port, no ``OTEL_*`` exporter and no access log, no
middleware or interceptor is added at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from connectrpc.compression import Compression
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp

from server.app.settings import Settings
from server.app.telemetry.access_log import AccessLog
from server.app.telemetry.calls import CallSink, ObservedCalls
from server.app.telemetry.errors_seen import ErrorCodes
from server.app.telemetry.metrics import RpcMetrics, RpcMetricsSink, WatchProgress, sample_gauges
from server.app.telemetry.probes import Probes
from server.app.telemetry.storage_spans import db_system, traced_storage
from server.app.telemetry.tracing import ServerSpans, configure_from_env
from server.domain.storage import Storage

__all__ = ["Probes", "Telemetry"]

_ACCESS_LOG_LEVELS = ("info", "debug", "trace")


class Telemetry:
    """The telemetry of one server process, set up from its settings and ``OTEL_*``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tracer_provider: TracerProvider | None = configure_from_env()
        self._metrics = RpcMetrics() if settings.metrics_port is not None else None
        self._watches = WatchProgress() if self._metrics is not None else None
        self._sinks: list[CallSink] = []
        if self._tracer_provider is not None:
            self._sinks.append(ServerSpans(self._tracer_provider))
        if self._metrics is not None:
            self._sinks.append(RpcMetricsSink(self._metrics))
        self._access_log: AccessLog | None = None
        if settings.access_log and settings.log_level in _ACCESS_LOG_LEVELS:
            self._access_log = AccessLog(settings.log_format)
            self._sinks.append(self._access_log)
        self._sampler: asyncio.Task[None] | None = None

    def storage(self, storage: Storage) -> Storage:
        """``storage``, its calls traced when tracing is on."""
        if self._tracer_provider is None:
            return storage
        return traced_storage(storage, db_system(self._settings.database_url))

    def metadata_interceptors(self) -> list[Any]:
        """The metadata interceptors to put first, before auth, so they see every call."""
        return [ErrorCodes()] if self._sinks else []

    def message_interceptors(self) -> list[Any]:
        """The message interceptors (watch progress), to put after every metadata one.

        connectrpc runs the leading metadata interceptors before it reads the body
        and ends that run at the first message interceptor.
        """
        return [self._watches] if self._sinks and self._watches is not None else []

    def observe(
        self, app: ASGIApp, procedures: frozenset[str], compressions: Iterable[Compression]
    ) -> ASGIApp:
        """``app`` with every request reported to the sinks (if any).

        ``procedures`` are the RPC paths; ``compressions`` those the RPCs use.
        """
        if not self._sinks:
            return app
        decompressors = {compression.name(): compression for compression in compressions}
        return ObservedCalls(app, procedures, self._sinks, decompressors)

    def start(self, storage: Storage, head: Callable[[], int]) -> None:
        """Start refreshing the sampled gauges (once storage is open).

        ``head`` is the newest revision handed to this process's watchers.
        """
        if self._metrics is not None and self._watches is not None:
            self._sampler = asyncio.create_task(
                sample_gauges(self._metrics, self._watches, storage, head)
            )

    async def stop(self) -> None:
        """Stop sampling, and write the access lines and send the spans still buffered."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._access_log is not None:
            self._access_log.close()
        if self._tracer_provider is not None:
            await asyncio.to_thread(self._tracer_provider.shutdown)
