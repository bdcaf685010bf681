"""The ray_serve plugin on a real local Ray: 2 CPUs, no dashboard, loopback only.

One Ray and one two-replica deployment serve the whole module (starting
them takes about 11 s here); the test that kills a replica runs last. The
replicas run the bundled SmolLM2 through the server's engine choice
(llama.cpp here), one thread each; the converted torch model is fetched once
before deploying, for a replica that falls back to torch. The adapter tests
make one random-B peft adapter on the bundled model and compare each replica's
greedy reply with the same engine's in this process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import mongars_plugins.ray_serve as ray_serve_plugin
from mongars_core.adapters import AdapterRegistry
from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MissingDependencyError,
)
from mongars_core.local_engine import LocalEngine
from mongars_core.pipeline import Assistant
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.types import (
    AdapterRef,
    ChatMessage,
    GenerationOutcome,
    GenerationRequest,
    OutputConstraint,
)
from mongars_plugins.cuda import model as model_files
from mongars_plugins.llamacpp.backend import LlamaCppBackend
from mongars_plugins.local_engines import local_engine
from mongars_plugins.model_store import BUNDLED_MODEL
from mongars_plugins.ray_serve import cluster, deployment
from mongars_plugins.ray_serve._ray import require_ray
from mongars_plugins.ray_serve.backend import RayServeBackend, _report_outcome
from mongars_plugins.ray_serve.cli import build_ray_app
from mongars_plugins.ray_serve.settings import RAY
from tests.conftest import BUNDLED_WITHOUT_MODELS, MODEL_CACHE


# The tests that take the `local_ray` fixture run a real Ray and the real
# model: they carry the `ray` and `model` marks, and are skipped (with a reason
# that names the extra) when ray is not installed. The others need neither.
def needs_ray(test: Any) -> Any:
    return pytest.mark.ray(pytest.mark.model(test))


PROMPT = "Describe the sea in three sentences."


def request(
    text: str = PROMPT,
    tokens: int = 16,
    temperature: float = 0.0,
    adapter: AdapterRef | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=text)],
        max_new_tokens=tokens,
        temperature=temperature,
        adapter=adapter,
    )


@pytest.fixture(scope="module")
def ray_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("ray-data"),
        cache_dir=MODEL_CACHE,
        # Two replicas of half a CPU each leave room for a third (the CLI test's).
        ray={"replicas": 2, "num_cpus": 0.5, "max_ongoing_requests": 8},
    )


@pytest.fixture(scope="module")
def local_ray(ray_settings: Settings) -> Iterator[cluster.Connection]:
    """A local Ray started as `mongars ray deploy` starts it, with the application deployed."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs ray: pip install 'mongars-assistant[ray]'")
    model_files.ensure_model(ray_settings)  # once, before the replicas look for it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # the replicas inherit the head's environment
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        local = cluster.LocalCluster.start(cluster.state_dir(ray_settings), num_cpus=2)
    try:
        connection = cluster.connect(ray_settings)
        deployment.deploy(ray_settings, connection.ray, local=True, timeout_s=120)
        yield connection
    finally:
        cluster.disconnect()
        local.stop()
    assert not local.alive()


@pytest.fixture
def backend(ray_settings: Settings, local_ray: cluster.Connection) -> RayServeBackend:
    return RayServeBackend(ray_settings)


def test_importing_the_plugin_does_not_import_ray() -> None:
    code = (
        "import sys, mongars_plugins.ray_serve, mongars_plugins.ray_serve.cli; "
        "assert 'ray' not in sys.modules and 'torch' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_plugin_registers_the_ray_backend_and_command(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, load_plugins=["ray_serve"])
    host = PluginHost(
        build_plugin_manager(settings, plugins=[("ray_serve", ray_serve_plugin)]), settings
    )
    assert isinstance(host.llm_backends()["ray"], RayServeBackend)
    assert "ray" in host.commands()


def test_a_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(MissingDependencyError, match=r"mongars-assistant\[ray\]"):
        require_ray()


async def test_without_a_cluster_the_backend_is_unavailable_and_unhealthy(
    tmp_path: Path,
) -> None:
    backend = RayServeBackend(Settings(data_dir=tmp_path))
    with pytest.raises(BackendUnavailableError, match="mongars ray deploy"):
        await backend.generate(request())
    assert await backend.health() is False


async def test_an_address_nothing_answers_at_fails_fast(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{cluster.free_port()}"
    backend = RayServeBackend(Settings(data_dir=tmp_path, ray={"address": nobody}))
    with pytest.raises(BackendUnavailableError, match="nothing answers"):
        await asyncio.wait_for(backend.load(), timeout=10)


async def test_ray_client_addresses_are_refused_by_the_streaming_backend(tmp_path: Path) -> None:
    backend = RayServeBackend(Settings(data_dir=tmp_path, ray={"address": "ray://h:10001"}))
    with pytest.raises(ConfigurationError, match="Ray Client"):
        await backend.generate(request())


def test_autoscaling_needs_both_bounds_in_order(tmp_path: Path) -> None:
    both = Settings(data_dir=tmp_path, ray={"min_replicas": 1, "max_replicas": 3})
    assert deployment.autoscaling(both) == {
        "min_replicas": 1,
        "max_replicas": 3,
        "initial_replicas": 1,
        # llama.cpp generates one request per slot together: a slot per ongoing request.
        "target_ongoing_requests": 4,
    }
    torch_first = Settings(
        data_dir=tmp_path,
        llm={"local_engines": ["torch", "llamacpp"]},
        ray={"min_replicas": 1, "max_replicas": 3},
    )
    scaling = deployment.autoscaling(torch_first)
    assert scaling is not None and scaling["target_ongoing_requests"] == 1  # one at a time
    assert deployment.autoscaling(Settings(data_dir=tmp_path)) is None
    with pytest.raises(ConfigurationError, match="MIN_REPLICAS"):
        deployment.autoscaling(Settings(data_dir=tmp_path, ray={"max_replicas": 3}))
    with pytest.raises(ConfigurationError, match="above"):
        deployment.autoscaling(
            Settings(data_dir=tmp_path, ray={"min_replicas": 4, "max_replicas": 2})
        )


def test_replicas_with_gpus_run_on_cuda_and_cpu_replicas_get_their_threads(
    tmp_path: Path,
) -> None:
    gpu = deployment.replica_config(Settings(data_dir=tmp_path, ray={"num_gpus": 0.5}))
    cpu = deployment.replica_config(
        Settings(data_dir=tmp_path, ray={"num_cpus": 3, "max_ongoing_requests": 6})
    )
    assert gpu["local"]["device"] == "cuda"
    assert gpu["local_engines"] == ["torch", "llamacpp"]  # CUDA is torch's
    assert (cpu["local"]["device"], cpu["local"]["threads"]) == ("cpu", 3)
    assert cpu["local_engines"] == ["llamacpp", "torch"]
    # llama.cpp: a thread per reserved CPU (replicas x threads fit the cluster's CPUs)
    # and a slot per request the replica takes at once.
    assert (cpu["llamacpp"]["threads"], cpu["llamacpp"]["slots"]) == (3, 6)
    half = deployment.replica_config(Settings(data_dir=tmp_path, ray={"num_cpus": 0.5}))
    assert half["llamacpp"]["threads"] == 1
    chosen = Settings(data_dir=tmp_path, ray={"num_cpus": 4}, llamacpp={"threads": 2, "slots": 3})
    given = deployment.replica_config(chosen)["llamacpp"]
    assert (given["threads"], given["slots"]) == (2, 3)  # settings win


def test_a_replica_builds_the_servers_engines_from_its_config(tmp_path: Path) -> None:
    config = deployment.replica_config(
        Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache", ray={"num_cpus": 2})
    )
    settings = deployment.replica_settings(json.loads(json.dumps(config)))  # as Serve sends it
    engine = local_engine(settings)
    assert isinstance(engine, LocalEngine)
    assert [name for name, _ in engine.engines] == ["llamacpp", "torch"]
    assert settings.cache_dir == tmp_path / "cache"
    assert settings.section(deployment.LLAMACPP).threads == 2


def test_the_replicas_outcome_reaches_the_caller_without_counts_after_a_resume() -> None:
    caller = request()
    whole = caller.model_copy()
    whole.outcome = GenerationOutcome(
        finish_reason="length", tokens=16, prompt_tokens=40, tokens_per_second=80.0
    )
    _report_outcome(caller, whole)
    assert caller.outcome == whole.outcome
    caller = request()
    resumed = caller.model_copy(update={"prefix": "The sea is"})
    resumed.outcome = GenerationOutcome(finish_reason="stop", tokens=9, prompt_tokens=44)
    _report_outcome(caller, resumed)
    # The counts cover only the last replica's part: the pipeline counts usage itself.
    assert caller.outcome == GenerationOutcome(finish_reason="stop")


def test_the_ray_backend_constrains_output_when_its_replicas_run_llamacpp(
    tmp_path: Path,
) -> None:
    schema = OutputConstraint(json_schema={"type": "object"})
    assert RayServeBackend(Settings(data_dir=tmp_path)).can_constrain(schema)
    torch_only = Settings(data_dir=tmp_path, llm={"local_engines": ["torch"]})
    assert not RayServeBackend(torch_only).can_constrain(schema)


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


@needs_ray
def test_the_local_ray_listens_on_loopback_only(
    local_ray: cluster.Connection, ray_settings: Settings
) -> None:
    assert local_ray.local is not None
    assert local_ray.address.startswith("127.0.0.1:")
    assert local_ray.address != "127.0.0.1:6379"  # Redis's port, Ray's default
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    sockets: list[tuple[str, int]] = []  # (address, pid) of this cluster and this driver
    for line in listening.splitlines():
        for pid in (int(found) for found in re.findall(r"pid=(\d+)", line)):
            if pid == os.getpid() or _session(pid) == local_ray.local.pid:
                sockets.append((line.split()[3], pid))
    assert len(sockets) > 5  # GCS, raylet, agents, workers, the driver...
    exposed = {
        pid
        for address, pid in sockets
        if not address.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:"))
    }
    # The one exception, which Serve hard-codes: each replica's inter-deployment
    # gRPC server binds [::]:0 (it checks the cluster's token).
    app = deployment.application(local_ray.ray, ray_settings.section(RAY).app_name)
    assert app is not None
    assert exposed <= {replica.pid for replica in app.replicas}


@needs_ray
async def test_both_replicas_serve_requests(
    backend: RayServeBackend, ray_settings: Settings, local_ray: cluster.Connection
) -> None:
    replies = await asyncio.gather(*(backend.generate(request(tokens=8)) for _ in range(6)))
    assert all(reply.strip() for reply in replies)
    app = deployment.application(local_ray.ray, ray_settings.section(RAY).app_name)
    assert app is not None and app.status == "RUNNING"
    running = {replica.replica_id for replica in app.replicas if replica.state == "RUNNING"}
    assert len(running) == 2
    assert set(backend.served_by) == running
    assert sum(backend.served_by.values()) == 6


@needs_ray
async def test_a_reply_streams_in_several_deltas(backend: RayServeBackend) -> None:
    deltas = [delta async for delta in backend.stream(request(tokens=16))]
    assert len(deltas) > 3
    assert "".join(deltas) == await backend.generate(request(tokens=16))
    assert backend.retries == 0


@needs_ray
async def test_the_replicas_engine_reports_its_outcome_to_the_caller(
    backend: RayServeBackend,
) -> None:
    asked = request(tokens=8)
    assert (await backend.generate(asked)).strip()
    outcome = asked.outcome
    assert (outcome.finish_reason, outcome.tokens) == ("length", 8)
    assert outcome.prompt_tokens is not None and outcome.prompt_tokens > 8  # the template's
    assert outcome.tokens_per_second is not None and outcome.tokens_per_second > 0
    assert outcome.adapter is None
    described = await backend.describe_replica()
    assert str(described["engine"]).startswith("llamacpp"), described


@needs_ray
async def test_one_replica_generates_concurrent_requests_together(
    local_ray: cluster.Connection, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        cache_dir=MODEL_CACHE,
        ray={
            "address": local_ray.address,
            "app_name": "batching-test",
            "num_cpus": 0.5,
            "max_ongoing_requests": 2,
        },
    )
    await asyncio.to_thread(deployment.deploy, settings, local_ray.ray, local=True, timeout_s=120)
    try:
        single = RayServeBackend(settings)
        story = request("Write a long story about a dragon.", tokens=32)
        await single.generate(story.model_copy())  # warm: the first prompt is the slowest

        async def timed() -> tuple[float, float]:
            times = [time.perf_counter() async for _ in single.stream(story.model_copy())]
            return times[0], times[-1]

        (first_a, last_a), (first_b, last_b) = await asyncio.gather(timed(), timed())
        assert len(single.served_by) == 1 and sum(single.served_by.values()) == 3
        # Batched, not one after the other: each had its first text before the
        # other was done.
        assert max(first_a, first_b) < min(last_a, last_b), (first_a, last_a, first_b, last_b)
    finally:
        await asyncio.to_thread(deployment.delete, local_ray.ray, "batching-test")


@needs_ray
async def test_closing_a_stream_stops_the_replica_generating(backend: RayServeBackend) -> None:
    stream = backend.stream(request("Write a long story about a dragon.", tokens=400))
    assert await anext(stream)
    await asyncio.wait_for(stream.aclose(), timeout=10)
    # Each replica counts the generations its stream's closing stopped; ask
    # (through Serve's choice of replica) until both have answered.
    stopped: dict[str, int] = {}
    for _ in range(50):
        described = await backend.describe_replica()
        stopped[described["replica_id"]] = described["stopped_generations"]
        if len(stopped) == 2 and sum(stopped.values()) >= 1:
            break
        await asyncio.sleep(0.1)
    assert sum(stopped.values()) == 1, stopped


@needs_ray
async def test_a_bad_request_is_a_backend_error_and_not_retried(
    backend: RayServeBackend,
) -> None:
    with pytest.raises(BackendError, match="max_new_tokens") as caught:
        await backend.generate(request(tokens=0))
    assert not isinstance(caught.value, BackendUnavailableError)
    assert backend.retries == 0
    assert await backend.health() is True


@needs_ray
async def test_an_assistant_chats_through_the_ray_backend(
    ray_settings: Settings, local_ray: cluster.Connection, tmp_path: Path
) -> None:
    settings = ray_settings.model_copy(
        update={
            # Same data directory: the backend finds the local Ray through its record.
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'mongars.sqlite3'}",
            "load_plugins": [*BUNDLED_WITHOUT_MODELS, "ray_serve"],
            "llm": ray_settings.llm.model_copy(
                update={"backend": "ray", "max_new_tokens": 12, "temperature": 0}
            ),
            "memory": ray_settings.memory.model_copy(update={"embedder": "none"}),
        }
    )
    pm = build_plugin_manager(settings, plugins=[("ray_serve", ray_serve_plugin)])
    async with await Assistant.from_settings(settings, plugin_manager=pm) as assistant:
        reply = await assistant.chat("alice", "Say hello.")
    assert reply.backend == "ray"
    assert reply.text.strip()


@needs_ray
def test_the_cli_deploys_shows_and_deletes_an_application_on_a_joined_cluster(
    local_ray: cluster.Connection, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,  # no local record: the cluster is joined by its address
        cache_dir=MODEL_CACHE,
        ray={"address": local_ray.address, "app_name": "cli-test", "num_cpus": 0.5},
    )
    app = build_ray_app(settings)
    runner = CliRunner()

    deployed = runner.invoke(app, ["deploy", "--timeout", "120"])
    assert deployed.exit_code == 0, deployed.output
    assert "RUNNING" in deployed.output

    shown = runner.invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert status["address"] == local_ray.address
    assert status["local_pid"] is None
    assert status["application"]["status"] == "RUNNING"
    assert [replica["state"] for replica in status["application"]["replicas"]] == ["RUNNING"]
    assert status["other_applications"] == ["mongars-llm"]

    stopped = runner.invoke(app, ["shutdown"])
    assert stopped.exit_code == 0, stopped.output
    assert "deleted the application 'cli-test'" in stopped.output
    # Joined by address: the cluster is not monGARS's to stop.
    assert local_ray.local is not None and local_ray.local.alive()
    after = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert after["application"] is None


# -- adapters ------------------------------------------------------------------------------

# peft (0.21) calls a transformers method that transformers 5 deprecates.
PEFT_ON_TRANSFORMERS_5 = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def adapter(ray_settings: Settings, local_ray: cluster.Connection) -> AdapterRef:
    """A random-B peft adapter on the bundled model, registered (the replicas read it
    from the registry's folder: one machine)."""
    torch = pytest.importorskip("torch", reason="needs torch (mongars-assistant[local])")
    pytest.importorskip("peft", reason="needs peft (mongars-assistant[train])")
    from transformers import AutoModelForCausalLM

    from tests.test_lora import make_peft_adapter

    folder = model_files.ensure_model(ray_settings)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    source = ray_settings.data_dir / "peft"
    make_peft_adapter(model, source, ["q_proj", "v_proj"], magnitude=1.0).unload()
    registry = AdapterRegistry(ray_settings.data_dir / "adapters")
    return registry.register(
        source, name="alice-style", version="1", base_model=BUNDLED_MODEL
    ).ref()


async def in_process(settings: Settings, *asked: GenerationRequest) -> list[str]:
    """The replies of the engine a replica of ``settings`` builds, built here."""
    engine = local_engine(deployment.replica_settings(deployment.replica_config(settings)))
    try:
        return [await engine.generate(one) for one in asked]
    finally:
        if isinstance(engine.engine, LlamaCppBackend):
            await engine.engine.aclose()


async def check_adapter_on_the_replicas(
    backend: RayServeBackend, settings: Settings, adapter: AdapterRef
) -> None:
    expected, base = await in_process(
        settings, request(QUESTION, 12, adapter=adapter), request(QUESTION, 12)
    )
    assert expected != base  # the adapter changes the reply
    adapted = request(QUESTION, 12, adapter=adapter)
    assert await backend.generate(adapted) == expected
    assert adapted.outcome.adapter == adapter.id
    plain = request(QUESTION, 12)  # right after: the base model, on whichever replica
    assert await backend.generate(plain) == base
    assert plain.outcome.adapter is None


@needs_ray
@PEFT_ON_TRANSFORMERS_5
async def test_a_requests_adapter_answers_on_the_replica_as_on_its_engine_here(
    backend: RayServeBackend, ray_settings: Settings, adapter: AdapterRef
) -> None:
    assert str((await backend.describe_replica())["engine"]).startswith("llamacpp")
    await check_adapter_on_the_replicas(backend, ray_settings, adapter)


@needs_ray
@PEFT_ON_TRANSFORMERS_5
async def test_a_stream_the_caller_stops_early_still_names_its_adapter(
    backend: RayServeBackend, adapter: AdapterRef
) -> None:
    """As the pipeline's repetition guard stops one: the replica never sends its outcome."""
    asked = request("Write a long story about a dragon.", tokens=200, adapter=adapter)
    stream = backend.stream(asked)
    for _ in range(3):
        assert await anext(stream)
    await asyncio.wait_for(stream.aclose(), timeout=10)
    assert asked.outcome.adapter == adapter.id
    assert asked.outcome.finish_reason is None  # it was stopped, not finished


@needs_ray
@PEFT_ON_TRANSFORMERS_5
async def test_torch_replicas_answer_with_the_adapter_too(
    local_ray: cluster.Connection, ray_settings: Settings, adapter: AdapterRef
) -> None:
    settings = Settings(
        data_dir=ray_settings.data_dir,
        cache_dir=MODEL_CACHE,
        llm={"local_engines": ["torch"]},
        ray={"address": local_ray.address, "app_name": "torch-test", "num_cpus": 0.5},
    )
    await asyncio.to_thread(deployment.deploy, settings, local_ray.ray, local=True, timeout_s=120)
    try:
        torch_backend = RayServeBackend(settings)
        assert (await torch_backend.describe_replica())["engine"] == "torch"
        await check_adapter_on_the_replicas(torch_backend, settings, adapter)
    finally:
        await asyncio.to_thread(deployment.delete, local_ray.ray, "torch-test")


@needs_ray
async def test_a_killed_replica_fails_no_request(
    backend: RayServeBackend, ray_settings: Settings, local_ray: cluster.Connection
) -> None:
    greedy = request(tokens=64)  # ends by itself, well before the limit
    expected = await backend.generate(greedy)

    async def consume(chosen: GenerationRequest) -> str:
        return "".join([delta async for delta in backend.stream(chosen)])

    sampled = request(tokens=40, temperature=0.8)
    tasks = [asyncio.create_task(consume(sampled if i >= 4 else greedy)) for i in range(6)]
    # Kill a replica while it sends one reply and holds another that has no
    # text yet: the first is cut mid-way, the second must start elsewhere.
    for _ in range(600):
        busy = [
            replica
            for replica, replying in backend.replying.items()
            if replying >= 1 and backend.in_flight[replica] >= 2
        ]
        if busy:
            break
        await asyncio.sleep(0.05)
    assert busy, (backend.in_flight, backend.replying)
    app = deployment.application(local_ray.ray, ray_settings.section(RAY).app_name)
    assert app is not None
    [victim] = [replica for replica in app.replicas if replica.replica_id == busy[0]]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)

    replies = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    # A cut reply was continued by the other replica: greedy, it is the same
    # text, with nothing lost or sent twice.
    assert replies[:4] == [expected] * 4
    assert all(reply.strip() for reply in replies[4:])
    assert backend.retries >= 1
    assert backend.resumed_streams >= 1
