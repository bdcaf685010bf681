"""What the LLM router costs per request, and how fast it fails over.

1. Overhead: the same instant stand-in backend streamed directly and through
   ``LLMRouter.stream`` (two endpoints, breakers, metrics on a real
   OpenTelemetry SDK meter), interleaved in one run; the report is the
   difference of the per-request latency percentiles. Target: under 0.5 ms p50.
2. Failover: a backend dies (``BackendUnavailableError``) after its fifth
   token; the time from its death to the first token of the next endpoint.
   Then the same with real processes: two Ollama stand-ins (echo mode, 20 ms
   between words) over loopback, the serving one killed with SIGKILL after
   its fifth word. Target: under 1 s.

    .venv/bin/python benchmarks/router.py [--requests 3000] [--failovers 50]

Results: benchmarks/results/router.*
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import summary_ms, write_results
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mongars_core.errors import BackendUnavailableError
from mongars_core.resilience import Backoff
from mongars_core.router import Endpoint, LLMRouter
from mongars_core.settings import EndpointSpec
from mongars_core.types import ChatMessage, GenerationRequest

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog."]


class Instant:
    """Streams nine words at once."""

    async def generate(self, request: GenerationRequest) -> str:
        return "".join(WORDS)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        for word in WORDS:
            yield word


class DiesAfterFive(Instant):
    """Streams five words, records the moment it dies, then fails."""

    def __init__(self) -> None:
        self.died_at = 0.0

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        for word in WORDS[:5]:
            yield word
        self.died_at = time.perf_counter()
        raise BackendUnavailableError("connection reset by peer")


def make_request() -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content="hello")])


async def overhead(requests: int) -> dict[str, object]:
    backend = Instant()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    router = LLMRouter(
        {"a": backend, "b": Instant()},
        "a",
        roles={"general": [EndpointSpec(backend="a"), EndpointSpec(backend="b")]},
    )
    router.instrument(provider.get_meter("benchmark"))
    request = make_request()
    direct: list[float] = []
    routed: list[float] = []
    for index in range(requests + 200):
        started = time.perf_counter()
        async for _ in backend.stream(request):
            pass
        direct_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        async for _ in router.stream(request):
            pass
        routed_ms = (time.perf_counter() - started) * 1000
        if index >= 200:  # warm-up
            direct.append(direct_ms)
            routed.append(routed_ms)
    provider.shutdown()
    direct_summary, routed_summary = summary_ms(direct), summary_ms(routed)
    return {
        "requests": requests,
        "direct": direct_summary,
        "router": routed_summary,
        "added_p50_ms": round(routed_summary["p50_ms"] - direct_summary["p50_ms"], 3),
        "added_p99_ms": round(routed_summary["p99_ms"] - direct_summary["p99_ms"], 3),
    }


async def failover(count: int) -> dict[str, object]:
    gaps: list[float] = []
    for _ in range(count):
        dying = DiesAfterFive()
        router = LLMRouter(
            {"dying": dying, "rescuer": Instant()},
            "dying",
            roles={"general": [EndpointSpec(backend="dying"), EndpointSpec(backend="rescuer")]},
            backoff=Backoff(0.2, 2.0),
        )
        seen = 0
        text = []
        async for delta in router.stream(make_request()):
            seen += 1
            text.append(delta)
            if seen == 6:
                gaps.append((time.perf_counter() - dying.died_at) * 1000)
        assert "".join(text) == "".join(WORDS), "no text repeated or lost"
    return {"failovers": count, "death_to_next_token": summary_ms(gaps)}


async def failover_processes(count: int) -> dict[str, object]:
    from mongars_plugins.ollama.backend import build_backends
    from mongars_plugins.ollama.settings import OllamaSettings
    from mongars_testkit.ollama_standin.server import StandinProcess

    message = "one two three four five six seven eight nine ten"
    gaps: list[float] = []
    for _ in range(count):
        processes = {
            name: StandinProcess.start("--echo", "--delay-s", "0.02") for name in ("a", "b")
        }
        try:
            hosts = [f"{name}={p.url}" for name, p in processes.items()]
            backends = {b.name: b for b in build_backends(OllamaSettings(hosts=hosts))}
            router = LLMRouter(
                backends,
                "ollama:a",
                roles={"general": [EndpointSpec(backend=name) for name in backends]},
            )
            served: list[Endpoint] = []
            text: list[str] = []
            killed_at = 0.0
            request = GenerationRequest(messages=[ChatMessage(role="user", content=message)])
            async for delta in router.stream(request, on_endpoint=served.append):
                text.append(delta)
                if len(text) == 5:
                    processes[served[0].backend_name.split(":")[1]].kill()
                    killed_at = time.perf_counter()
                elif len(text) == 6:
                    gaps.append((time.perf_counter() - killed_at) * 1000)
            assert "".join(text) == message, "no text repeated or lost"
        finally:
            for process in processes.values():
                process.stop()
    return {"failovers": count, "death_to_next_token": summary_ms(gaps)}


def markdown(results: dict[str, object]) -> str:
    o = results["overhead"]
    f = results["failover"]
    p = results["failover_processes"]
    assert isinstance(o, dict) and isinstance(f, dict) and isinstance(p, dict)
    gap = f["death_to_next_token"]
    real = p["death_to_next_token"]
    direct, routed = o["direct"], o["router"]
    return f"""# LLM router

Measured in one run on {results["machine"]}.

## Overhead per request

{o["requests"]} requests of nine streamed tokens from an instant stand-in backend,
each made directly and through `LLMRouter.stream` (a role with two endpoints,
circuit breakers, an OpenTelemetry SDK meter), interleaved.

| path | p50 ms | p99 ms | mean ms |
|---|---|---|---|
| backend directly | {direct["p50_ms"]} | {direct["p99_ms"]} | {direct["mean_ms"]} |
| through the router | {routed["p50_ms"]} | {routed["p99_ms"]} | {routed["mean_ms"]} |

Added by the router: **{o["added_p50_ms"]} ms p50** (target under 0.5 ms:
{"met" if o["added_p50_ms"] < 0.5 else "NOT met"}), {o["added_p99_ms"]} ms p99.

## Failover

{f["failovers"]} requests whose backend dies after its fifth token: time from the
death to the first token of the next endpoint (which continues from the text
already sent; the test checks nothing is repeated or lost).

| p50 ms | p99 ms | mean ms |
|---|---|---|
| {gap["p50_ms"]} | {gap["p99_ms"]} | {gap["mean_ms"]} |

These backends are in process, so this is the router's own failover cost.

With real processes: {p["failovers"]} requests over two Ollama stand-in processes
(echo mode, 20 ms between words; the stand-in follows Ollama's REST API, it is
not Ollama), the serving one killed with SIGKILL after its fifth word; time
from the kill to the next word, which the other process continues from the
text already sent:

| p50 ms | p99 ms | mean ms |
|---|---|---|
| {real["p50_ms"]} | {real["p99_ms"]} | {real["mean_ms"]} |

Target under 1 s: {"met" if max(gap["p99_ms"], real["p99_ms"]) < 1000 else "NOT met"}.
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--failovers", type=int, default=50)
    parser.add_argument("--process-failovers", type=int, default=10)
    options = parser.parse_args()
    results: dict[str, object] = {
        "overhead": await overhead(options.requests),
        "failover": await failover(options.failovers),
        "failover_processes": await failover_processes(options.process_failovers),
    }
    results["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    path = write_results("router", results, markdown(results))
    print(markdown(results))
    print(f"results written to {path}")


if __name__ == "__main__":
    asyncio.run(main())
