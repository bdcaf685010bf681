"""The local model on Ray Serve: requests/s and p50 latency with 1 and 2 replicas.

The same requests (a fixed set of prompts, greedy, a few new tokens) are sent
by several concurrent clients, first to the local backend in this process
(the baseline: the server's engine choice, llama.cpp batching its slots where
it runs), then through the ``ray`` backend to a local Ray with 1 and then 2
replicas. The machine's CPUs
are shared out: one replica gets all of them, two replicas half each. Each
configuration is warmed up first (model loaded, first generation done).

    .venv/bin/python benchmarks/ray_serve.py [--requests 24] [--clients 4] [--tokens 16]

Results: benchmarks/results/ray_serve.*
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import platformdirs
from common import summary_ms, table, write_results

from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_plugins.cuda import model as model_files
from mongars_plugins.cuda.settings import LOCAL
from mongars_plugins.llamacpp.settings import LLAMACPP
from mongars_plugins.local_engines import local_engine
from mongars_plugins.ray_serve import cluster, deployment
from mongars_plugins.ray_serve.backend import RayServeBackend
from mongars_plugins.ray_serve.settings import RAY

PROMPTS = [
    "Describe the sea in three sentences.",
    "Give me a tip for sleeping better.",
    "What is a good name for a cat?",
    "Explain what a rainbow is.",
    "Suggest a quick vegetarian dinner.",
    "Why do leaves change colour in autumn?",
]


def requests(count: int, tokens: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            messages=[ChatMessage(role="user", content=PROMPTS[index % len(PROMPTS)])],
            max_new_tokens=tokens,
            temperature=0,
        )
        for index in range(count)
    ]


async def one_round(
    generate: Callable[[GenerationRequest], Awaitable[str]],
    batch: list[GenerationRequest],
    clients: int,
) -> tuple[list[float], float]:
    """Send ``batch`` through ``clients`` concurrent callers: latencies (ms) and seconds."""
    queue: asyncio.Queue[GenerationRequest] = asyncio.Queue()
    for request in batch:
        queue.put_nowait(request)
    latencies: list[float] = []

    async def client() -> None:
        while not queue.empty():
            request = queue.get_nowait()
            started = time.perf_counter()
            reply = await generate(request)
            latencies.append((time.perf_counter() - started) * 1000)
            assert reply.strip(), "an empty reply"

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


def ray_settings(base: Settings, name: str, replicas: int, threads: int) -> Settings:
    """An application of ``replicas`` replicas, each running the model on ``threads`` threads.

    Each reserves half a Ray CPU, so both applications fit the machine at
    once and the rounds can alternate; an idle replica uses no CPU.
    """
    return base.model_copy(
        update={
            "local": base.section(LOCAL).model_copy(update={"threads": threads}),
            "llamacpp": base.section(LLAMACPP).model_copy(update={"threads": threads}),
            "ray": base.section(RAY).model_copy(
                update={"app_name": name, "replicas": replicas, "num_cpus": 0.5}
            ),
        }
    )


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="mongars-bench-ray-") as data_dir:
        return await measure_all(arguments, cpus, Path(data_dir))


async def measure_all(arguments: argparse.Namespace, cpus: int, data_dir: Path) -> dict[str, Any]:
    base = Settings(
        data_dir=data_dir,
        cache_dir=Path(platformdirs.user_cache_dir("mongars")),
        ray={"max_ongoing_requests": arguments.clients},
    )
    model_files.ensure_model(base)
    batch = requests(arguments.requests, arguments.tokens)
    local = local_engine(base)  # the server's engine choice, as in the replicas
    await local.load()
    configurations: dict[str, dict[str, Any]] = {
        "baseline": {"label": f"local backend, in process ({local.describe()})", "threads": None},
    }
    generators: dict[str, Callable[[GenerationRequest], Awaitable[str]]] = {
        "baseline": local.generate
    }
    backends: dict[str, RayServeBackend] = {}

    head = cluster.LocalCluster.start(cluster.state_dir(base), num_cpus=cpus)
    try:
        connection = cluster.connect(base)
        for count in (1, 2):
            name = f"replicas_{count}"
            threads = max(1, cpus // count)
            settings = ray_settings(base, f"bench-{count}", count, threads)
            started = time.perf_counter()
            await asyncio.to_thread(
                deployment.deploy, settings, connection.ray, local=True, timeout_s=300
            )
            configurations[name] = {
                "label": f"Ray Serve, {count} replica{'s' if count > 1 else ''}",
                "threads": threads,
                "deploy_s": round(time.perf_counter() - started, 1),
            }
            backends[name] = RayServeBackend(settings)
            generators[name] = backends[name].generate
        for generate in generators.values():  # warm-up: every client path once
            await asyncio.gather(*(generate(request) for request in batch[: arguments.clients]))
        latencies: dict[str, list[float]] = {name: [] for name in generators}
        seconds = dict.fromkeys(generators, 0.0)
        rates: dict[str, list[float]] = {name: [] for name in generators}
        # Alternate the configurations round by round: whatever else the
        # machine does then weighs on all of them alike.
        for _ in range(arguments.rounds):
            for name, generate in generators.items():
                measured, elapsed = await one_round(generate, batch, arguments.clients)
                latencies[name].extend(measured)
                seconds[name] += elapsed
                rates[name].append(round(len(measured) / elapsed, 3))
    finally:
        cluster.disconnect()
        head.stop()
    for name, configuration in configurations.items():
        configuration.update(
            requests=len(latencies[name]),
            seconds=round(seconds[name], 2),
            requests_per_s=round(len(latencies[name]) / seconds[name], 3),
            requests_per_s_by_round=rates[name],
            **summary_ms(latencies[name]),
        )
        if name in backends:
            configuration["replicas_used"] = len(backends[name].served_by)
    return {
        "cpus": cpus,
        "clients": arguments.clients,
        "max_new_tokens": arguments.tokens,
        "rounds": arguments.rounds,
        **configurations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    arguments = parser.parse_args()
    results = asyncio.run(run(arguments))

    baseline = results["baseline"]
    rows = []
    for name in ("baseline", "replicas_1", "replicas_2"):
        measured = results[name]
        ratio = measured["requests_per_s"] / baseline["requests_per_s"]
        measured["throughput_vs_baseline"] = round(ratio, 2)
        threads = measured["threads"] or "the engine's default"
        by_round = measured["requests_per_s_by_round"]
        rows.append(
            f"| {measured['label']} | {threads} | {measured['requests_per_s']} | "
            f"{min(by_round)}–{max(by_round)} | {ratio:.2f} | "
            f"{measured['p50_ms']:.0f} | {measured['p99_ms']:.0f} |"
        )
    columns = [
        "",
        "threads each",
        "requests/s",
        "rounds' range",
        "× baseline",
        "p50 ms",
        "p99 ms",
    ]
    markdown = f"""
# Ray Serve (SmolLM2-135M-Instruct, {platform.machine()}, {results["cpus"]} CPUs)

{arguments.rounds} rounds of {arguments.requests} requests from {arguments.clients} concurrent
clients, greedy, {arguments.tokens} new tokens each, the same prompts for every row. The rows
take turns round by round after a warm-up. Latency is a whole reply as the client sees it;
the baseline is the local backend in this process (the server's engine choice).

{table(columns, rows)}

Deploying took {results["replicas_1"]["deploy_s"]} s for 1 replica and
{results["replicas_2"]["deploy_s"]} s for 2 (replicas load the cached model); with 2
replicas, {results["replicas_2"]["replicas_used"]} of them answered.

"Rounds' range" is the spread of requests/s between rounds: other work on a
shared machine slows some rounds, and alternating the rows spreads that over
all of them. On a CPU, two replicas with one thread each beat one replica with
every thread: a small model's generation does not keep several threads busy.
"""
    path = write_results("ray_serve", results, markdown)
    print(markdown)
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
