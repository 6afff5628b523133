"""OpenTelemetry traces (and RPC metrics) from the standard ``OTEL_*`` variables.

Nothing is set up unless an exporter is asked for (``OTEL_TRACES_EXPORTER``, or
an OTLP endpoint), so without one no span is ever made. With one,
``ServerSpans`` makes each RPC's span from what ``ObservedCalls`` sees on the
wire, starting it as the request arrives and ending it once the response has left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import get_global_textmap
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
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from server.app.telemetry.calls import Call
from server.app.telemetry.codes import GRPC_NUMBERS, OK


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


def _split(address: str, default_port: int | None) -> tuple[str, int | None]:
    """``host:port`` (an IPv6 host in brackets) as host and port."""
    host, colon, port = address.rpartition(":")
    if colon and port.isdigit() and (not host.startswith("[") or host.endswith("]")):
        return host, int(port)
    return address, default_port


# Balancers' health checks and tools' reflection calls are not the service's work.
_UNTRACED_SERVICES = ("/grpc.health.", "/grpc.reflection.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_HOST_BYTES = 260


def _peer_attributes(call: Call) -> dict[str, AttributeValue]:
    """``server.address``/``port`` from the Host header, ``client.address``/``port``."""
    attributes: dict[str, AttributeValue] = {}
    if call.host:
        # Client input: no longer than a DNS name and a port can be.
        host = call.host[:_MAX_HOST_BYTES].decode("latin-1")
        address, port = _split(host, _DEFAULT_PORTS.get(call.scheme))
        attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
    if call.peer != "-":
        address, port = _split(call.peer, None)
        attributes["client.address"] = address
        if port is not None:
            attributes["client.port"] = port
    return attributes


class ServerSpans:
    """A call sink making each RPC's SERVER span, on OpenTelemetry's RPC conventions.

    The span starts when the request arrives (continuing the client's
    ``traceparent``), is current while the call is served (so storage calls
    are its children), and ends once ``ObservedCalls`` has seen the response
    leave and read its status. This replaces connectrpc-otel's interceptor,
    which does the same with more work per call (see the README, "Traces").
    """

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("library")
        self._propagator = get_global_textmap()
        self._attributes: dict[tuple[str, str], dict[str, AttributeValue]] = {}
        # Call metrics only where OTEL_METRICS_EXPORTER installed a meter provider.
        self._metrics = (
            RpcCallMetrics() if isinstance(metrics.get_meter_provider(), MeterProvider) else None
        )

    def started(self, call: Call) -> None:
        """Start the span of an RPC and make it current."""
        if not call.is_rpc or call.procedure.startswith(_UNTRACED_SERVICES):
            return
        parent = self._propagator.extract(call.carrier) if call.carrier else None
        # Everything known at the start, in one dict (the SDK checks each set of attributes).
        span = self._tracer.start_span(
            call.procedure[1:],
            context=parent,
            kind=SpanKind.SERVER,
            attributes={**self._method_attributes(call), **_peer_attributes(call)},
            record_exception=False,
            set_status_on_exception=False,
        )
        call.span = span
        # An unsampled call: nothing more to record, no context for storage spans.
        if span.is_recording():
            call.context_token = context.attach(trace.set_span_in_context(span, parent))

    def _method_attributes(self, call: Call) -> dict[str, AttributeValue]:
        """The attributes every call of a method on a protocol shares, built once."""
        key = (call.procedure, call.protocol)
        attributes = self._attributes.get(key)
        if attributes is None:
            service, _, _ = call.procedure[1:].partition("/")
            attributes = self._attributes[key] = {
                "rpc.system.name": "connectrpc",
                "rpc.method": call.procedure[1:],
                "rpc.service": service,
                "rpc.system": "connect_rpc" if call.protocol == "connect" else "grpc",
                "connectrpc.protocol": call.protocol,
            }
        return attributes

    def finished(self, call: Call) -> None:
        """Add the outcome to the span and end it."""
        span = call.span
        if span is None:
            return
        if call.context_token is not None:
            context.detach(call.context_token)
        code = call.code
        if self._metrics is not None:
            self._metrics.record(call, code)
        if not span.is_recording():
            return
        outcome: dict[str, AttributeValue] = {
            "rpc.response.status_code": code,
            "http.request.body.size": call.bytes_in,
            "http.response.body.size": call.bytes_out,
        }
        if call.protocol != "connect":
            outcome["rpc.grpc.status_code"] = GRPC_NUMBERS.get(code, 2)
        elif code != OK:
            outcome["rpc.connect_rpc.error_code"] = code
        if call.error is not None:
            outcome["error.type"] = type(call.error).__qualname__
        elif code != OK:
            outcome["error.type"] = code
        span.set_attributes(outcome)
        if code in _SERVER_FAULTS:
            if call.error is not None:
                span.record_exception(call.error)
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()


class RpcCallMetrics:
    """OpenTelemetry's RPC server metrics: call duration, request and response sizes."""

    def __init__(self) -> None:
        meter = metrics.get_meter("library")
        self._duration = meter.create_histogram(
            "rpc.server.call.duration",
            unit="s",
            description="Measures the duration of an incoming Remote Procedure Call (RPC)",
            explicit_bucket_boundaries_advisory=[
                0.005,
                0.01,
                0.025,
                0.05,
                0.075,
                0.1,
                0.25,
                0.5,
                0.75,
                1,
                2.5,
                5,
                7.5,
                10,
            ],
        )
        self._request_size = meter.create_histogram(
            "rpc.server.request.size", unit="By", description="Request bytes on the wire"
        )
        self._response_size = meter.create_histogram(
            "rpc.server.response.size", unit="By", description="Response bytes on the wire"
        )

    def record(self, call: Call, code: str) -> None:
        """The metrics of one finished call."""
        attributes = {
            "rpc.system.name": "connectrpc",
            "rpc.method": call.procedure[1:],
            "rpc.response.status_code": code,
        }
        self._duration.record(call.duration, attributes)
        self._request_size.record(call.bytes_in, attributes)
        self._response_size.record(call.bytes_out, attributes)
