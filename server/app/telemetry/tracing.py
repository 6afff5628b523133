"""OpenTelemetry traces (and RPC metrics) from the standard ``OTEL_*`` variables.

Nothing is set up unless an exporter is asked for (``OTEL_TRACES_EXPORTER``, or
an OTLP endpoint), so without one no span is ever made. With one, server spans
come from ``connectrpc-otel``'s interceptor, which this module extends (see
``RpcSpans``), and ``ObservedCalls`` ends them once the response is on the wire.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from connectrpc.request import RequestContext
from connectrpc_otel import OpenTelemetryInterceptor
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from server.app.telemetry.calls import Call, current_call
from server.app.telemetry.codes import GRPC_NUMBERS, OK
from server.app.telemetry.errors_seen import error_code


class DiscardSpans(SpanExporter):
    """Makes every span and drops it: ``OTEL_TRACES_EXPORTER=discard`` measures tracing's cost."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Drop ``spans``."""
        return SpanExportResult.SUCCESS


_SPAN_EXPORTERS: dict[str, Callable[[], SpanExporter]] = {
    "otlp": OTLPSpanExporter,
    "console": ConsoleSpanExporter,
    "discard": DiscardSpans,
}
_METRIC_EXPORTERS: dict[str, Callable[[], MetricExporter]] = {
    "otlp": OTLPMetricExporter,
    "console": ConsoleMetricExporter,
}
# Codes that are the server's fault: only these mark a server span as an error
# (OpenTelemetry's gRPC conventions); NOT_FOUND and the like are the caller's.
_SERVER_FAULTS = frozenset(
    {"unknown", "deadline_exceeded", "unimplemented", "internal", "unavailable", "data_loss"}
)


def _exporter_names(signal: str) -> list[str]:
    names = [n.strip() for n in os.environ.get(f"OTEL_{signal}_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    ):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def _pick(table: dict[str, Callable[[], Any]], name: str, variable: str) -> Any:
    if name not in table:
        raise ValueError(f"{variable}={name!r}: this server knows {', '.join(sorted(table))}")
    return table[name]()


def configure_from_env() -> TracerProvider | None:
    """Install global tracer (and meter) providers if ``OTEL_*`` asks for exporters.

    Returns the tracer provider, or None when tracing is off (no exporter, or
    ``OTEL_SDK_DISABLED=true``). Sampling (``OTEL_TRACES_SAMPLER``), batching
    (``OTEL_BSP_*``) and the OTLP endpoint and headers are read by the SDK.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "library")})
    metric_names = _exporter_names("METRICS")
    if metric_names:
        readers = [
            PeriodicExportingMetricReader(_pick(_METRIC_EXPORTERS, n, "OTEL_METRICS_EXPORTER"))
            for n in metric_names
        ]
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    span_names = _exporter_names("TRACES")
    if not span_names:
        return None
    provider = TracerProvider(resource=resource)
    for name in span_names:
        exporter = _pick(_SPAN_EXPORTERS, name, "OTEL_TRACES_EXPORTER")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


class RpcSpans(OpenTelemetryInterceptor):
    """connectrpc-otel's server interceptor, with what it lacks added.

    connectrpc-otel (0.3.0) starts the span, continues the client's
    ``traceparent`` and records ``rpc.server.call.duration``. Its span ends in
    ``on_end``, before a unary response is even encoded, and it marks every
    error as a span error. Here the span stays open until ``ObservedCalls``
    has seen the response leave (``SpanEnder``), which adds the protocol,
    ``rpc.service``, the status code of every call (successes too), body sizes,
    and an error status only for codes that are the server's fault.
    """

    def __init__(self) -> None:
        super().__init__(client=False)
        # Sizes are recorded only where OTEL_METRICS_EXPORTER installed a meter provider.
        self._sizes = None
        if isinstance(metrics.get_meter_provider(), MeterProvider):
            meter = metrics.get_meter("library")
            self._sizes = (
                meter.create_histogram(
                    "rpc.server.request.size", unit="By", description="Request bytes on the wire"
                ),
                meter.create_histogram(
                    "rpc.server.response.size", unit="By", description="Response bytes on the wire"
                ),
            )

    @contextmanager
    def _start_span(
        self,
        ctx: RequestContext[Any, Any],
        span_name: str,
        shared_attrs: dict[str, AttributeValue],
    ) -> Iterator[Span]:
        """Like the base's, but the span outlives the context and errors are judged later."""
        call = current_call.get()
        parent = None
        if not trace.get_current_span().get_span_context().is_valid:
            parent = self._propagator.extract(ctx.request_headers)
        attributes: dict[str, AttributeValue] = {
            **shared_attrs,
            "rpc.service": ctx.method.service_name,
        }
        if call is not None:
            attributes["rpc.system"] = "connect_rpc" if call.protocol == "connect" else "grpc"
            attributes["connectrpc.protocol"] = call.protocol
            address, _, port = call.peer.rpartition(":")
            attributes["client.address"] = address
            if port.isdigit():
                attributes["client.port"] = int(port)
        with self._tracer.start_as_current_span(
            span_name,
            kind=SpanKind.SERVER,
            attributes=attributes,
            context=parent,
            end_on_exit=call is None,
            record_exception=True,
            set_status_on_exception=False,
        ) as span:
            if call is not None:
                call.span = span
            yield span

    async def on_end(
        self, token: Any, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        """Note the error's code for the call record, then let the base finish its part."""
        if error is not None and (call := current_call.get()) is not None:
            call.error_code = error_code(error)
        self.on_end_sync(token, ctx, error)

    def record_sizes(self, call: Call, attributes: dict[str, AttributeValue]) -> None:
        """The request and response size metrics of one call."""
        if self._sizes is not None:
            request_size, response_size = self._sizes
            request_size.record(call.bytes_in, attributes)
            response_size.record(call.bytes_out, attributes)


class SpanEnder:
    """A call sink that completes and ends the server span ``RpcSpans`` left open."""

    def __init__(self, spans: RpcSpans) -> None:
        self._spans = spans

    def started(self, call: Call) -> None:
        """Spans start in the interceptor, once the method is known."""

    def finished(self, call: Call) -> None:
        """Add the outcome to the span and end it."""
        span = call.span
        if span is None:
            return
        code = call.code
        outcome: dict[str, AttributeValue] = {
            "rpc.response.status_code": code,
            "http.request.body.size": call.bytes_in,
            "http.response.body.size": call.bytes_out,
        }
        if call.protocol != "connect":
            outcome["rpc.grpc.status_code"] = GRPC_NUMBERS.get(code, 2)
        elif code != OK:
            outcome["rpc.connect_rpc.error_code"] = code
        span.set_attributes(outcome)
        if code in _SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()
        self._spans.record_sizes(
            call, {"rpc.method": call.procedure[1:], "rpc.response.status_code": code}
        )
