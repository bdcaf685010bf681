"""OpenTelemetry for the server: a span per request (pipeline stages nest
under it), and metrics for requests, latency, tokens and open websockets.

Providers belong to the app, not to the process: nothing is set globally, so
two apps in one process (tests, a host application) keep separate metrics.
By default nothing leaves the process; ``/metrics`` renders the app's own
Prometheus registry. ``MONGARS_SERVER__TRACES_EXPORTER`` and
``MONGARS_SERVER__METRICS_EXPORTER`` add console or OTLP exporters.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars_core.settings import ServerSettings


class Telemetry:
    """The app's tracer, meters and Prometheus registry."""

    def __init__(self, settings: ServerSettings) -> None:
        resource = Resource.create({"service.name": "mongars"})
        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        if settings.metrics_exporter == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif settings.metrics_exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            endpoint = _otlp(settings, "metrics")
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint)))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        # With no trace exporter, spans are not recorded at all: a request then
        # pays for a non-recording span, not for building one nobody reads.
        sampler = ALWAYS_OFF if settings.traces_exporter == "none" else ALWAYS_ON
        self.tracer_provider = TracerProvider(resource=resource, sampler=sampler)
        if settings.traces_exporter == "console":
            self.tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif settings.traces_exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = _otlp(settings, "traces")
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
            )
        self.tracer = self.tracer_provider.get_tracer("mongars_server")
        self.pipeline_tracer = self.tracer_provider.get_tracer("mongars_core")
        meter = self.meter = self.meter_provider.get_meter("mongars_server")
        self.requests = meter.create_counter(
            "mongars_http_requests", description="HTTP requests served."
        )
        self.latency = meter.create_histogram(
            "mongars_http_request_duration", unit="s", description="HTTP request latency."
        )
        self.tokens = meter.create_counter(
            "mongars_generated_tokens", description="Token deltas streamed by LLM backends."
        )
        self.turns = meter.create_counter("mongars_turns", description="Conversation turns.")
        self.websockets = meter.create_up_down_counter(
            "mongars_websockets_active", description="Open websocket connections."
        )

    def render_prometheus(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _otlp(settings: ServerSettings, signal: str) -> str | None:
    if settings.otlp_endpoint is None:
        return None  # the SDK's default or OTEL_EXPORTER_OTLP_* variables
    return settings.otlp_endpoint.rstrip("/") + f"/v1/{signal}"


class RequestTelemetry:
    """ASGI middleware: a server span and the request metrics for each HTTP request."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        method = scope["method"]

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.telemetry.tracer.start_as_current_span(
            f"{method} {scope['path']}", kind=trace.SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, record_status)
            finally:
                route = _route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                labels: dict[str, Any] = {"method": method, "route": route, "status": status}
                self.telemetry.requests.add(1, labels)
                self.telemetry.latency.record(time.perf_counter() - started, labels)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
