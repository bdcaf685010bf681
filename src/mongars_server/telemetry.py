"""OpenTelemetry for the server: a span per request (pipeline stages nest
under it), and metrics for requests, latency, tokens and open websockets.

Providers belong to the app, not to the process: nothing is set globally, so
two apps in one process (tests, a host application) keep separate metrics.
By default nothing leaves the process; ``/metrics`` renders the app's own
Prometheus registry, every sample labelled with the process' ``worker`` id
(with Redis, :mod:`mongars_server.shared_metrics` adds the other processes').
Histograms in seconds get second-scaled buckets (the SDK's default buckets
are made for milliseconds). ``MONGARS_SERVER__TRACES_EXPORTER`` and
``MONGARS_SERVER__METRICS_EXPORTER`` add console or OTLP exporters.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars_server.settings import ServerSettings

# Request and model latencies: 5 ms to 2 minutes.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Telemetry:
    """The app's tracer, meters and Prometheus registry."""

    def __init__(self, settings: ServerSettings) -> None:
        resource = Resource.create({"service.name": "mongars"})
        # Several processes of one server (and several apps in one process) are
        # told apart in /metrics by this label.
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
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
        seconds = View(
            instrument_type=Histogram,
            instrument_unit="s",
            aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
        )
        self.meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, views=[seconds]
        )
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

    def snapshot(self) -> str:
        """This process' metrics as Prometheus text (no worker label yet)."""
        return generate_latest(self.registry).decode()

    def render_prometheus(self, others: Sequence[tuple[str, str]] = ()) -> bytes:
        """This process' metrics, and ``others`` (``(worker id, snapshot)``), as one page."""
        return merge_snapshots([(self.worker_id, self.snapshot()), *others])

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


def merge_snapshots(snapshots: Sequence[tuple[str, str]]) -> bytes:
    """One Prometheus page of several processes' snapshots, each sample labelled
    ``worker="<id>"`` (a family's samples from every worker stay together)."""
    families: dict[str, Metric] = {}
    for worker, text in snapshots:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "worker": worker}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(list(families.values())))
    return generate_latest(registry)


class _Snapshot:
    """A prometheus_client collector of fixed metric families."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families

    def describe(self) -> list[Metric]:
        return []


class RedactQueryStrings(logging.Filter):
    """Replaces the query string of every path in log lines with ``?[redacted]``.

    uvicorn logs the path with its raw query string: HTTP requests on
    ``uvicorn.access``, websocket handshakes on ``uvicorn.error``. A query may
    carry a websocket ticket (``t=``, or ``%74=``, which the server decodes to
    ``t``) or what a user searches for (``q=``): no query string is logged.
    """

    LOGGERS = ("uvicorn.access", "uvicorn.error")
    _QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.redact(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        return True

    @classmethod
    def redact(cls, text: str) -> str:
        return cls._QUERY.sub(r"\1?[redacted]", text)

    @classmethod
    def install(cls) -> None:
        """Add the filter to uvicorn's loggers (once; it stays, doing nothing else)."""
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(existing, cls) for existing in logger.filters):
                logger.addFilter(cls())
