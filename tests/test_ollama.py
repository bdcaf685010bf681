"""The ollama plugin against the Ollama stand-in, over loopback.

No real Ollama server can run here, so these tests talk to
``mongars_testkit.ollama_standin``: a stand-in that follows Ollama's documented
REST API (the fidelity tests at the end pin that down with raw HTTP). Most
tests use the test kit's ``ollama_standin`` fixture, served from a thread with a
fast echo backend; the kill tests run it as a process, and one test runs it on
the real local model.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import mongars_plugins.memory
import mongars_plugins.ollama
from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MissingDependencyError,
    ModelNotFoundError,
)
from mongars_core.local_engine import LocalEngine
from mongars_core.pipeline import Assistant
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationOutcome, GenerationRequest
from mongars_plugins.ollama import (
    OLLAMA,
    OllamaBackend,
    OllamaEmbedder,
    build_backends,
    parse_hosts,
)
from mongars_plugins.ollama.backend import parse_retry_after
from mongars_testkit.ollama_standin import (
    BUSY,
    EchoBackend,
    OllamaStandin,
    StandinProcess,
    StandinServer,
    chat_model,
    echo_standin,
    local_standin,
)
from tests.conftest import MODEL_CACHE, run_mongars

MODEL = "smollm2:135m"
LONG_MESSAGE = " ".join(f"word{index}" for index in range(200))


def ask(text: str, **fields: object) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content=text)], **fields)


def backend_for(url: str, **ollama: Any) -> OllamaBackend:
    settings = Settings(ollama={"hosts": [url], "timeout_s": 5, **ollama})
    return build_backends(settings.section(OLLAMA))[0]


async def wait_for(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# The kit's `ollama_standin` fixture serves MODEL and all-minilm; tinyllama can be pulled.
pytestmark = pytest.mark.ollama_standin(pullable=["tinyllama"])


@pytest.fixture
def server(ollama_standin: StandinServer) -> StandinServer:
    return ollama_standin


@pytest.fixture
def standin(server: StandinServer) -> OllamaStandin:
    return server.standin


@pytest.fixture
def echo(standin: OllamaStandin) -> EchoBackend:
    assert isinstance(standin.backend, EchoBackend)
    return standin.backend


@pytest.fixture
def backend(server: StandinServer) -> OllamaBackend:
    return backend_for(server.url)


def dead_url() -> str:
    """A loopback URL where nothing listens (a server that was stopped)."""
    with StandinServer(echo_standin()) as stopped:
        return stopped.url


# -- hosts and registration ---------------------------------------------------------


def test_one_unnamed_host_is_the_backend_ollama() -> None:
    (host,) = parse_hosts(["127.0.0.1"])
    assert host.backend_name == "ollama"
    assert host.url == "http://127.0.0.1:11434"


def test_several_hosts_are_named_by_name_or_position() -> None:
    hosts = parse_hosts(["gpu=http://10.0.0.5:11434/", "https://ollama.example.org", "[::1]:8080"])
    assert [host.backend_name for host in hosts] == ["ollama:gpu", "ollama:host2", "ollama:host3"]
    assert [host.url for host in hosts] == [
        "http://10.0.0.5:11434",
        "https://ollama.example.org",
        "http://[::1]:8080",
    ]
    assert hosts[0].matches("gpu") and hosts[0].matches("ollama:gpu")
    assert hosts[1].matches("https://ollama.example.org/") and not hosts[1].matches("gpu")


@pytest.mark.parametrize(
    ("hosts", "complaint"),
    [
        (["a=http://x:1", "a=http://y:2"], "twice"),
        (["bad name=http://x:1"], "not a valid host name"),
        (["ftp://x"], r"not an http\(s\) URL"),
        (["http://x:notaport"], "not a URL"),
    ],
)
def test_bad_hosts_are_configuration_errors(hosts: list[str], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        parse_hosts(hosts)


def test_the_plugin_registers_a_backend_per_host_and_embedders_when_asked(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        ollama={"hosts": "a=http://127.0.0.1:1,http://127.0.0.1:2", "embed_model": "all-minilm"},
    )
    host = PluginHost(
        build_plugin_manager(
            settings, load_entrypoints=False, plugins=[("ollama", mongars_plugins.ollama)]
        ),
        settings,
    )
    backends = host.llm_backends()
    assert sorted(backends) == ["ollama:a", "ollama:host2"]
    assert all(isinstance(backend, OllamaBackend) for backend in backends.values())
    assert backends["ollama:host2"].url == "http://127.0.0.1:2"
    embedders = host.embedders()
    assert sorted(embedders) == ["ollama:a", "ollama:host2"]
    assert all(embedder.model == "all-minilm" for embedder in embedders.values())
    assert "ollama" in host.commands()

    no_embed_model = settings.section(OLLAMA).model_copy(update={"embed_model": None})
    without = settings.model_copy(update={"ollama": no_embed_model})
    assert PluginHost(host.pm, without).embedders() == {}


def test_the_plugin_loads_without_touching_the_ollama_package() -> None:
    probe = (
        "import sys; sys.modules['ollama'] = None\n"
        "import mongars_plugins.ollama as plugin\n"
        "from mongars_core.settings import Settings\n"
        "backends = plugin.build_backends(Settings().section(plugin.OLLAMA))\n"
        "print(backends[0].name, 'httpx' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ollama", "False"]


async def test_a_missing_ollama_package_names_the_extra(
    backend: OllamaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ollama", None)
    with pytest.raises(MissingDependencyError, match=r"mongars-assistant\[ollama\]"):
        await backend.generate(ask("hello"))


async def test_a_turn_runs_on_ollama_with_ollama_embeddings(
    tmp_path: Path, server: StandinServer, standin: OllamaStandin
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        llm={"backend": "ollama", "timeout_s": 10, "first_token_timeout_s": 5},
        memory={"embedder": "ollama"},
        ollama={"hosts": [server.url], "embed_model": "all-minilm"},
    )
    pm = build_plugin_manager(
        settings,
        load_entrypoints=False,
        plugins=[("ollama", mongars_plugins.ollama), ("memory", mongars_plugins.memory)],
    )
    async with await Assistant.from_settings(settings, plugin_manager=pm) as assistant:
        reply = await assistant.chat("alice", "my bicycle is red")
    assert reply.backend == "ollama"
    assert reply.text == "my bicycle is red"
    assert standin.stats.requests["POST /api/chat"] == 1
    assert standin.stats.requests["POST /api/embed"] >= 1


# -- generation ------------------------------------------------------------------------


async def test_stream_yields_the_reply_word_by_word(
    backend: OllamaBackend, echo: EchoBackend
) -> None:
    deltas = [
        delta
        async for delta in backend.stream(
            ask("the quick brown fox", max_new_tokens=7, temperature=0.1, top_p=0.5, stop=["END"])
        )
    ]
    assert deltas == ["the", " quick", " brown", " fox"]
    sent = echo.requests[-1]
    assert (sent.max_new_tokens, sent.temperature, sent.top_p, sent.stop) == (7, 0.1, 0.5, ["END"])
    assert sent.model == MODEL


async def test_generate_returns_the_whole_reply_within_the_token_limit(
    backend: OllamaBackend, echo: EchoBackend
) -> None:
    assert await backend.generate(ask("one two three four", max_new_tokens=2)) == "one two"
    assert await backend.generate(ask("keep this STOP not that", stop=["STOP"])) == "keep this"


async def test_ollama_says_when_a_reply_was_cut_at_the_cap(backend: OllamaBackend) -> None:
    cut = ask("one two three four", max_new_tokens=2)
    assert [delta async for delta in backend.stream(cut)] == ["one", " two"]
    assert (cut.outcome.finish_reason, cut.outcome.tokens) == ("length", 2)
    whole = ask("one two", max_new_tokens=50)
    await backend.generate(whole)
    assert (whole.outcome.finish_reason, whole.outcome.tokens) == ("stop", 2)


async def test_the_request_model_overrides_the_configured_one(server: StandinServer) -> None:
    backend = backend_for(server.url, model="missing:model")
    with pytest.raises(ModelNotFoundError, match="model 'missing:model' not found"):
        await backend.generate(ask("hi"))
    assert await backend.generate(ask("hi", model=MODEL)) == "hi"


async def test_a_prefix_is_continued_and_options_are_passed_on(
    backend: OllamaBackend, echo: EchoBackend
) -> None:
    request = ask("one two three four", prefix="one two", options={"seed": 7, "num_ctx": 512})
    assert [delta async for delta in backend.stream(request)] == [" three", " four"]
    sent = echo.requests[-1]
    assert sent.prefix == "one two"
    assert [message.role for message in sent.messages] == ["user"]
    assert sent.options == {"seed": 7, "num_ctx": 512}
    assert await backend.generate(ask("a b c", prefix="a")) == " b c"


async def test_complete_streams_a_bare_prompt(backend: OllamaBackend) -> None:
    assert [d async for d in backend.complete("to be or", system="be brief")] == [
        "to",
        " be",
        " or",
    ]


async def test_closing_the_stream_stops_generation_on_the_server(
    standin: OllamaStandin, echo: EchoBackend, backend: OllamaBackend
) -> None:
    echo.delay_s = 0.02
    stream = backend.stream(ask(LONG_MESSAGE, max_new_tokens=200))
    received = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert received == ["word0", " word1", " word2"]
    await wait_for(lambda: standin.stats.generations_cancelled == 1)
    assert echo.streams_closed_early == 1
    assert echo.words_sent < 100  # of 200: the server stopped when the client left
    assert standin.stats.active_generations == 0


# -- models, health, embeddings ---------------------------------------------------------


async def test_list_show_and_running_models(backend: OllamaBackend) -> None:
    models = {model.name: model for model in await backend.list_models()}
    assert set(models) == {MODEL, "all-minilm:latest"}
    assert models[MODEL].family == "llama" and models[MODEL].size > 0
    details = await backend.show()
    assert details.name == MODEL
    assert details.capabilities == ["completion"]
    assert details.context_length == 8192
    assert await backend.running() == []
    await backend.generate(ask("warm up"))
    (running,) = await backend.running()
    assert running.name == MODEL
    assert running.expires_at is not None
    assert running.expires_at > datetime.now(UTC) + timedelta(minutes=4)


async def test_pull_reports_each_layer_and_installs_the_model(backend: OllamaBackend) -> None:
    seen: list[tuple[str, int, int | None]] = []
    assert await backend.pull("tinyllama", lambda *report: seen.append(report)) == "success"
    stages = list(dict.fromkeys(stage for stage, _, _ in seen))
    assert len(stages) == 3 and all(stage.startswith("pulling ") for stage in stages)
    for stage in stages:
        done = [report[1] for report in seen if report[0] == stage]
        total = {report[2] for report in seen if report[0] == stage}
        assert done == sorted(done) and len(total) == 1 and done[-1] == total.pop()
    assert "tinyllama:latest" in {model.name for model in await backend.list_models()}


async def test_pulling_a_model_the_registry_lacks_is_model_not_found(
    backend: OllamaBackend,
) -> None:
    with pytest.raises(ModelNotFoundError, match="file does not exist"):
        await backend.pull("no-such-model")


async def test_health_is_true_when_up_and_false_at_once_when_stopped(
    backend: OllamaBackend,
) -> None:
    assert await backend.health()
    assert await backend.version() == "0.0.0-standin"
    stopped = backend_for(dead_url())
    started = time.perf_counter()
    assert not await stopped.health()
    assert time.perf_counter() - started < 1.0


def test_embeddings_are_normalised_rows_of_the_models_width(server: StandinServer) -> None:
    (host,) = parse_hosts([server.url])
    embedder = OllamaEmbedder(host, Settings().section(OLLAMA), "all-minilm")
    assert embedder.dimension == 64  # probed from the server
    vectors = embedder.embed(["red bicycle", "a red bicycle", "tax return"])
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape == (0, 64)


def test_embeddings_from_a_chat_only_model_are_refused(server: StandinServer) -> None:
    (host,) = parse_hosts([server.url])
    with pytest.raises(BackendError, match="does not support embeddings") as caught:
        OllamaEmbedder(host, Settings().section(OLLAMA), MODEL).embed(["x"])
    assert not isinstance(caught.value, BackendUnavailableError)


# -- error translation ------------------------------------------------------------------


async def test_an_unknown_model_is_model_not_found_in_every_call(server: StandinServer) -> None:
    backend = backend_for(server.url, model="nope")
    with pytest.raises(ModelNotFoundError, match="model 'nope' not found"):
        await backend.generate(ask("hi"))
    with pytest.raises(ModelNotFoundError):
        [delta async for delta in backend.stream(ask("hi"))]
    with pytest.raises(ModelNotFoundError):
        await backend.show()


async def test_overload_is_unavailable_with_the_servers_retry_after(
    standin: OllamaStandin, backend: OllamaBackend
) -> None:
    standin.fail_next(503, BUSY, retry_after="7")
    with pytest.raises(BackendUnavailableError, match="HTTP 503") as busy:
        [delta async for delta in backend.stream(ask("hi"))]
    assert busy.value.retry_after == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    standin.fail_next(429, "rate limit exceeded", retry_after=later)
    with pytest.raises(BackendUnavailableError, match="rate limit") as limited:
        await backend.generate(ask("hi"))
    assert limited.value.retry_after is not None and 25 < limited.value.retry_after <= 30
    standin.fail_next(500, "out of memory")
    with pytest.raises(BackendUnavailableError, match="out of memory") as failed:
        await backend.list_models()
    assert failed.value.retry_after is None
    assert await backend.generate(ask("fine again")) == "fine again"


def test_retry_after_is_seconds_or_a_date() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_a_refused_request_is_a_plain_backend_error(
    standin: OllamaStandin, backend: OllamaBackend
) -> None:
    standin.fail_next(400, "invalid options")
    with pytest.raises(BackendError, match="invalid options") as refused:
        await backend.generate(ask("hi"))
    assert not isinstance(refused.value, BackendUnavailableError | ModelNotFoundError)


async def test_a_server_that_is_not_ollama_is_a_backend_error(server: StandinServer) -> None:
    backend = backend_for(f"{server.url}/not-ollama")
    with pytest.raises(BackendError, match="is it an Ollama server") as wrong:
        await backend.generate(ask("hi"))
    assert not isinstance(wrong.value, ModelNotFoundError)


async def test_an_unreachable_server_is_unavailable() -> None:
    backend = backend_for(dead_url())
    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        await backend.generate(ask("hi"))
    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        [delta async for delta in backend.stream(ask("hi"))]


async def test_a_model_that_fails_mid_stream_is_unavailable(
    echo: EchoBackend, standin: OllamaStandin, backend: OllamaBackend
) -> None:
    echo.fail_after = 2
    received: list[str] = []
    with pytest.raises(BackendUnavailableError, match="mid-stream: the model runner stopped"):
        async for delta in backend.stream(ask("one two three four")):
            received.append(delta)
    assert received == ["one", " two"]
    assert standin.stats.generations_failed == 1


async def test_a_server_that_stops_answering_times_out_as_unavailable(
    echo: EchoBackend, server: StandinServer
) -> None:
    echo.delay_s = 3.0
    backend = backend_for(server.url, timeout_s=0.3)
    received: list[str] = []
    with pytest.raises(BackendUnavailableError, match=r"did not answer within 0\.3 s"):
        async for delta in backend.stream(ask("slow reply here")):
            received.append(delta)
    assert received == ["slow"]


async def test_a_killed_server_fails_mid_stream_as_unavailable() -> None:
    with StandinProcess.start("--echo", "--delay-s", "0.05", timeout_s=30) as process:
        backend = backend_for(process.url)
        assert await backend.health()
        received: list[str] = []
        with pytest.raises(BackendUnavailableError, match="broke the connection"):
            async for delta in backend.stream(ask(LONG_MESSAGE, max_new_tokens=200)):
                received.append(delta)
                if len(received) == 3:
                    process.kill()  # kill -9, mid-stream
        assert 3 <= len(received) < 200
        assert not await backend.health()
        with pytest.raises(BackendUnavailableError):
            await backend.generate(ask("anyone there?"))


# -- the command line -------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin_process() -> Iterator[StandinProcess]:
    arguments = ("--echo", "--pullable", "tinyllama", "--pull-steps", "2")
    with StandinProcess.start(*arguments, timeout_s=30) as process:
        yield process


@pytest.fixture
def cli_env(tmp_path: Path, standin_process: StandinProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_CACHE_DIR=str(tmp_path / "cache"),
        MONGARS_OLLAMA__HOSTS=standin_process.url,
        COLUMNS="200",
    )
    return env


def test_cli_lists_and_shows_models(cli_env: dict[str, str]) -> None:
    listed = run_mongars("ollama", "list", env=cli_env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout and "all-minilm:latest" in listed.stdout
    shown = run_mongars("ollama", "show", env=cli_env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "134.52M" in shown.stdout and "completion" in shown.stdout
    missing = run_mongars("ollama", "show", "nope", env=cli_env, timeout=60)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and "model 'nope' not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cli_pulls_with_a_progress_bar(cli_env: dict[str, str]) -> None:
    pulled = run_mongars("ollama", "pull", "tinyllama", env=cli_env, timeout=60)
    assert pulled.returncode == 0, pulled.stderr
    assert "ollama: tinyllama success" in pulled.stdout
    assert "pulling" in pulled.stderr and "91.0/91.0 MB" in pulled.stderr
    failed = run_mongars("ollama", "pull", "no-such-model", env=cli_env, timeout=60)
    assert failed.returncode == 1 and "file does not exist" in failed.stderr


def test_cli_health_reports_each_host(
    cli_env: dict[str, str], standin_process: StandinProcess
) -> None:
    healthy = run_mongars("ollama", "health", env=cli_env, timeout=60)
    assert healthy.returncode == 0, healthy.stderr
    assert "up" in healthy.stdout and "0.0.0-standin" in healthy.stdout
    cli_env["MONGARS_OLLAMA__HOSTS"] = f"live={standin_process.url},gone={dead_url()}"
    mixed = run_mongars("ollama", "health", env=cli_env, timeout=60)
    assert mixed.returncode == 1
    assert "ollama:live" in mixed.stdout and "ollama:gone" in mixed.stdout
    assert "down" in mixed.stdout
    only = run_mongars("ollama", "health", "--host", "live", env=cli_env, timeout=60)
    assert only.returncode == 0 and "ollama:gone" not in only.stdout


# -- the stand-in speaks Ollama's documented API ----------------------------------------


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.split("\n")[:-1]]


def test_fidelity_chat_stream_and_single_object(server: StandinServer) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi there"}]}
        lines = ndjson(client.post("/api/chat", json=body))
        *chunks, final = lines
        assert [chunk["message"] for chunk in chunks] == [
            {"role": "assistant", "content": "hi"},
            {"role": "assistant", "content": " there"},
        ]
        assert all(chunk["done"] is False and chunk["model"] == MODEL for chunk in chunks)
        assert final["done"] is True and final["done_reason"] == "stop"
        for key in (
            "total_duration",
            "load_duration",
            "prompt_eval_count",
            "prompt_eval_duration",
            "eval_count",
            "eval_duration",
        ):
            assert isinstance(final[key], int) and final[key] >= 0, key
        assert final["eval_count"] == 2
        created = str(final["created_at"])
        assert created.endswith("Z") and datetime.fromisoformat(created).tzinfo is not None

        single = client.post("/api/chat", json={**body, "stream": False})
        assert single.headers["content-type"].startswith("application/json")
        assert single.json()["message"] == {"role": "assistant", "content": "hi there"}
        assert single.json()["done"] is True

        limited = client.post(
            "/api/chat", json={**body, "stream": False, "options": {"num_predict": 1}}
        ).json()
        assert limited["done_reason"] == "length" and limited["eval_count"] == 1

        loaded = client.post("/api/chat", json={"model": MODEL, "messages": []}).json()
        assert loaded["done"] is True and loaded["done_reason"] == "load"


class CountingEcho(EchoBackend):
    """An echo that reports its outcome, as the llama.cpp and torch engines do."""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        async for word in super().stream(request):
            yield word
        request.outcome = GenerationOutcome(
            finish_reason="stop", tokens=5, prompt_tokens=31, tokens_per_second=50.0
        )


def test_the_final_object_reports_the_backends_own_counts() -> None:
    with StandinServer(OllamaStandin(CountingEcho(), models=[chat_model(MODEL)])) as server:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi there"}]}
        final = httpx.post(f"{server.url}/api/chat", json={**body, "stream": False}).json()
    assert final["message"]["content"] == "hi there"
    assert (final["prompt_eval_count"], final["eval_count"]) == (31, 5)  # not words
    assert final["eval_duration"] == 100_000_000  # 5 tokens at 50 tokens/s
    assert final["done_reason"] == "stop"


def test_fidelity_generate(server: StandinServer) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        lines = ndjson(client.post("/api/generate", json={"model": MODEL, "prompt": "a b"}))
        assert [line["response"] for line in lines] == ["a", " b", ""]
        assert lines[-1]["done"] is True
        single = client.post(
            "/api/generate", json={"model": MODEL, "prompt": "a b", "stream": False}
        ).json()
        assert single["response"] == "a b" and single["done"] is True
        raw = client.post(
            "/api/generate", json={"model": MODEL, "prompt": "x", "raw": True, "system": "s"}
        )
        assert raw.status_code == 400


def test_fidelity_errors_and_status_codes(server: StandinServer) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=server.url, timeout=5) as client:
        not_found = "model 'nope' not found"
        cases = [
            (client.post("/api/chat", json={**chat, "model": "nope"}), 404, not_found),
            (client.post("/api/chat", content=b""), 400, "missing request body"),
            (client.post("/api/chat", json={**chat, "model": ""}), 400, "model is required"),
            (client.post("/api/chat", json={**chat, "messages": "hi"}), 400, "cannot unmarshal"),
            (client.post("/api/chat", json=[1]), 400, "cannot unmarshal array"),
            (client.post("/api/chat", content=b"{oops"), 400, "invalid"),
            (
                client.post("/api/chat", json={**chat, "model": "all-minilm"}),
                400,
                '"all-minilm" does not support chat',
            ),
            (client.post("/api/show", json={"model": "nope"}), 404, not_found),
            (
                client.post("/api/embed", json={"model": "all-minilm", "input": 3}),
                400,
                "invalid input type",
            ),
            (client.post("/api/pull", json={"model": "bad name!"}), 400, "invalid model name"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == "application/json"
            assert message in response.json()["error"]
        missing = client.get("/api/nothing")
        assert (missing.status_code, missing.text) == (404, "404 page not found")
        assert client.get("/api/chat").status_code == 405
        assert client.get("/").text == "Ollama is running"
        assert client.get("/api/version").json() == {"version": "0.0.0-standin"}


def test_fidelity_an_error_mid_stream_is_an_error_line(
    echo: EchoBackend, server: StandinServer
) -> None:
    echo.fail_after = 1
    with httpx.Client(base_url=server.url, timeout=5) as client:
        response = client.post(
            "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "a b c"}]}
        )
    assert response.status_code == 200
    lines = ndjson(response)
    assert lines[0]["message"] == {"role": "assistant", "content": "a"}
    assert lines[-1] == {"error": "the model runner stopped unexpectedly"}


async def test_fidelity_busy_server_answers_503(echo: EchoBackend, server: StandinServer) -> None:
    server.standin.max_queue = 1
    echo.delay_s = 0.05
    body = {"model": MODEL, "messages": [{"role": "user", "content": LONG_MESSAGE}]}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=5) as client,
        client.stream("POST", "/api/chat", json=body) as first,
    ):
        await anext(first.aiter_lines())
        second = await client.post("/api/chat", json=body)
        assert (second.status_code, second.json()) == (503, {"error": BUSY})


def test_fidelity_tags_show_ps_and_embed(server: StandinServer) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        models = client.get("/api/tags").json()["models"]
        assert {model["name"] for model in models} == {MODEL, "all-minilm:latest"}
        for model in models:
            assert set(model) == {"name", "model", "modified_at", "size", "digest", "details"}
            assert len(model["digest"]) == 64
            assert {"format", "family", "parameter_size", "quantization_level"} <= set(
                model["details"]
            )
        shown = client.post("/api/show", json={"model": MODEL}).json()
        assert {"modelfile", "parameters", "template", "details", "model_info"} <= set(shown)
        assert shown["model_info"]["llama.context_length"] == 8192

        assert client.get("/api/ps").json() == {"models": []}
        client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": "1h"})
        (running,) = client.get("/api/ps").json()["models"]
        assert running["name"] == MODEL and running["expires_at"].endswith("Z")
        client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": 0})
        assert client.get("/api/ps").json() == {"models": []}
        bad = client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": "5x"})
        assert bad.status_code == 400

        embedded = client.post(
            "/api/embed",
            json={"model": "all-minilm", "input": ["a red bicycle", "the tax"], "dimensions": 8},
        ).json()
        assert embedded["model"] == "all-minilm" and len(embedded["embeddings"]) == 2
        assert all(len(row) == 8 for row in embedded["embeddings"])
        assert np.allclose(np.linalg.norm(embedded["embeddings"], axis=1), 1.0, atol=1e-5)
        one = client.post("/api/embed", json={"model": "all-minilm", "input": "a"}).json()
        assert len(one["embeddings"]) == 1 and len(one["embeddings"][0]) == 64


def test_fidelity_pull_progress_stream(server: StandinServer) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        lines = ndjson(client.post("/api/pull", json={"model": "tinyllama"}))
        assert lines[0] == {"status": "pulling manifest"}
        assert [line["status"] for line in lines[-3:]] == [
            "verifying sha256 digest",
            "writing manifest",
            "success",
        ]
        layers = [line for line in lines if "digest" in line]
        assert all(str(line["digest"]).startswith("sha256:") for line in layers)
        assert all(str(line["status"]) == f"pulling {str(line['digest'])[7:19]}" for line in layers)
        assert all(line.get("completed", 0) <= line["total"] for line in layers)

        unknown = client.post("/api/pull", json={"model": "no-such-model"})
        assert unknown.status_code == 200  # the error comes after the manifest line
        assert ndjson(unknown) == [
            {"status": "pulling manifest"},
            {"error": "pull model manifest: file does not exist"},
        ]
        quiet = client.post("/api/pull", json={"model": "no-such-model", "stream": False})
        assert quiet.status_code == 500 and "file does not exist" in quiet.json()["error"]
        done = client.post("/api/pull", json={"model": "tinyllama", "stream": False})
        assert done.json() == {"status": "success"}


# -- the real local model -----------------------------------------------------------------


@pytest.mark.model
async def test_the_standin_answers_with_the_local_model(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cache_dir=MODEL_CACHE)
    standin = local_standin(settings, embedder=None)
    with StandinServer(standin) as server:
        backend = backend_for(server.url, timeout_s=120)
        request = ask("What is the capital of France?", max_new_tokens=8, temperature=0)
        deltas = [delta async for delta in backend.stream(request)]
        assert deltas and "".join(deltas).strip()
        assert standin.stats.generations_completed == 1
        stream = backend.stream(ask("Tell me a long story about a dragon.", max_new_tokens=64))
        await anext(stream)
        await stream.aclose()
        local = standin.backend
        assert isinstance(local, LocalEngine)  # the server's choice of engine
        assert local.engine_name == "llamacpp", local.describe()
        # The model stops at its next token: long before the 64 it was asked for.
        engine: Any = local.engine
        await wait_for(lambda: engine.stopped_generations == 1, timeout_s=10)
        await wait_for(lambda: standin.stats.generations_cancelled == 1)
        # The final object carries the engine's counts: the prompt as the model read
        # it (chat template and default system prompt), and the tokens it generated.
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            body = {"model": MODEL, "prompt": "Name a colour.", "stream": False}
            answer = await client.post(
                "/api/generate", json={**body, "options": {"num_predict": 6, "temperature": 0}}
            )
        final = answer.json()
        assert final["done_reason"] == "length" and final["eval_count"] == 6
        assert final["prompt_eval_count"] > 10  # far more than the prompt's 3 words
        assert final["eval_duration"] > 0


@pytest.mark.embedder
def test_the_standin_embeds_with_minilm(tmp_path: Path) -> None:
    standin = local_standin(Settings(data_dir=tmp_path, cache_dir=MODEL_CACHE))
    with StandinServer(standin) as server:
        (host,) = parse_hosts([server.url])
        embedder = OllamaEmbedder(host, Settings().section(OLLAMA), "all-minilm")
        vectors = embedder.embed(["My sister is called Amélie", "What is my sister's name?"])
        assert vectors.shape == (2, 384) and embedder.dimension == 384
        assert float(vectors[0] @ vectors[1]) > 0.4


def test_models_provision_pulls_what_each_role_lacks(tmp_path: Path) -> None:
    roles = {
        "general": [{"backend": "ollama", "model": MODEL}],
        "small": [{"backend": "ollama", "model": "provisioned:1b"}],
        "missing": [{"backend": "ollama", "model": "no-such-model:1b"}],
    }
    # A stand-in of its own: the module's shared one may have pulled models already.
    standin = StandinProcess.start("--echo", "--pullable", "provisioned:1b")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_CACHE_DIR=str(tmp_path / "cache"),
        MONGARS_OLLAMA__HOSTS=standin.url,
        MONGARS_LLM__ROLES=json.dumps(roles),
        COLUMNS="200",
    )
    with standin:
        first = run_mongars("models", "provision", env=env, timeout=60)
        again = run_mongars("models", "provision", "--role", "small", env=env, timeout=60)
    assert first.returncode == 1, "a model the registry lacks is reported and fails the command"
    rows = {line.split("│")[1].strip(): line for line in first.stdout.splitlines() if "│" in line}
    assert "exists" in rows["general"]
    assert "installed" in rows["small"]
    assert "unavailable" in rows["missing"]
    assert again.returncode == 0, again.stdout + again.stderr
    assert "exists" in again.stdout
