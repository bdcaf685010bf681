"""Traces, metrics and their exporters."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.server.conftest import LiveServer, bearer, register


async def test_a_request_span_holds_the_pipeline_stages(
    make_server: Callable[..., LiveServer],
) -> None:
    live_server = make_server(server={"traces_exporter": "console"})
    exporter = InMemorySpanExporter()
    live_server.state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        token = await register(http, "alice")
        exporter.clear()
        response = await http.post(
            "/api/v1/conversation/chat", json={"message": "trace me"}, headers=bearer(token)
        )
    assert response.status_code == 200
    name = "POST /api/v1/conversation/chat"
    # The request's span ends just after the response has gone out.
    for _ in range(50):
        spans = {span.name: span for span in exporter.get_finished_spans()}
        if name in spans:
            break
        await asyncio.sleep(0.05)
    request = spans[name]
    assert request.attributes["http.response.status_code"] == 200
    turn = spans["mongars.turn"]
    assert turn.parent.span_id == request.context.span_id
    for stage in ["prepare", "recall", "reason", "style", "generate", "adapt", "speech", "persist"]:
        span = spans[f"mongars.{stage}"]
        assert span.context.trace_id == request.context.trace_id, stage


async def test_no_spans_are_recorded_without_an_exporter(live_server: LiveServer) -> None:
    exporter = InMemorySpanExporter()
    live_server.state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    await asyncio.sleep(0.1)
    assert exporter.get_finished_spans() == ()


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], str]:
    """``{(metric, sorted labels): line}`` for each sample of a Prometheus text page."""
    return {
        (line.split("{")[0], tuple(sorted(re.findall(r'(\w+)="([^"]*)"', line)))): line
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_metrics_count_requests_tokens_and_sockets(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"metrics_access": "public"})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        await client.post(
            "/api/v1/conversation/chat", json={"message": "one two three"}, headers=bearer(token)
        )
        chat = {"method": "POST", "route": "/api/v1/conversation/chat", "status": "200"}
        # The chat's request metrics are recorded just after its response went out.
        for _ in range(50):
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            samples = parse_prometheus(scraped.text)
            if any(set(chat.items()) <= set(labels) for _, labels in samples):
                break
            await asyncio.sleep(0.05)

    def value(name: str, **labels: str) -> float:
        for (metric, found), line in samples.items():
            if metric == name and set(labels.items()) <= set(found):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no {name} {labels} in /metrics")

    assert value("mongars_http_requests_total", **chat) == 1
    assert value("mongars_http_request_duration_seconds_count", **chat) == 1
    assert value("mongars_generated_tokens_total", backend="instant") == 5
    assert value("mongars_turns_total", backend="instant") == 1


async def test_metrics_access_is_a_setting(make_server: Callable[..., LiveServer]) -> None:
    admin_only = make_server()
    async with httpx.AsyncClient(base_url=admin_only.url) as client:
        assert (await client.get("/metrics")).status_code == 401
        token = await register(client, "alice")
        assert (await client.get("/metrics", headers=bearer(token))).status_code == 403
    admin_only.call(admin_only.state.accounts.set_admin("alice", True))
    async with httpx.AsyncClient(base_url=admin_only.url) as client:
        assert (await client.get("/metrics", headers=bearer(token))).status_code == 200
    off = make_server(server={"metrics_access": "off"})
    async with httpx.AsyncClient(base_url=off.url) as client:
        assert (await client.get("/metrics")).status_code == 404


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[str]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).received.append(f"{self.path} {self.headers.get('Content-Type')}")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP endpoint that accepts OTLP/HTTP exports and records them."""
    received: list[str] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


async def test_traces_and_metrics_go_to_an_otlp_endpoint(
    collector: tuple[str, list[str]], make_server: Callable[..., LiveServer]
) -> None:
    # The collector is set up first, so it outlives the server's final export.
    endpoint, received = collector
    server = make_server(
        server={"traces_exporter": "otlp", "metrics_exporter": "otlp", "otlp_endpoint": endpoint}
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    telemetry = server.state.telemetry
    wanted = {"/v1/traces application/x-protobuf", "/v1/metrics application/x-protobuf"}
    # The request's span ends just after the response is sent: flush until it is out.
    for _ in range(50):
        telemetry.tracer_provider.force_flush(5_000)
        telemetry.meter_provider.force_flush(5_000)
        if wanted <= set(received):
            break
        await asyncio.sleep(0.1)
    assert "/v1/traces application/x-protobuf" in received
    assert "/v1/metrics application/x-protobuf" in received
