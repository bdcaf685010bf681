"""Fault tests with real processes on loopback: Ollama stand-ins killed, slowed,
flapping and gone, under the router and under the server.

The stand-in (``mongars_testkit.ollama_standin``) follows Ollama's REST API; it
is not Ollama, which cannot run here (docs/ollama.md). Most stand-ins here echo;
the ``model`` test runs the real model on the default local engine (llama.cpp).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mongars_core.errors import BackendUnavailableError, GenerationTimeoutError
from mongars_core.resilience import Backoff
from mongars_core.router import Endpoint, LLMRouter
from mongars_core.settings import EndpointSpec
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_plugins.ollama.backend import build_backends
from mongars_plugins.ollama.settings import OllamaSettings
from mongars_testkit.ollama_standin.server import StandinProcess, StandinServer, echo_standin
from tests.conftest import MODEL_CACHE
from tests.server.conftest import bearer, register, running, server_settings

MESSAGE = "one two three four five six seven eight nine ten eleven twelve"


def request(text: str = MESSAGE) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content=text)], max_new_tokens=64)


def router_over(urls: dict[str, str], **options: Any) -> LLMRouter:
    """A router whose role "general" is the given stand-ins, in order."""
    hosts = [f"{name}={url}" for name, url in urls.items()]
    backends = {b.name: b for b in build_backends(OllamaSettings(hosts=hosts, timeout_s=5))}
    options.setdefault("backoff", Backoff(0.05, 0.2))
    options.setdefault("first_token_timeout_s", 3)
    options.setdefault("timeout_s", 10)
    roles = {"general": [EndpointSpec(backend=f"ollama:{name}") for name in urls]}
    return LLMRouter(backends, next(iter(backends)), roles=roles, **options)


@pytest.fixture
def two_standins() -> Iterator[dict[str, StandinProcess]]:
    processes = {
        "a": StandinProcess.start("--echo", "--delay-s", "0.05"),
        "b": StandinProcess.start("--echo", "--delay-s", "0.05"),
    }
    try:
        yield processes
    finally:
        for process in processes.values():
            process.stop()


async def test_killing_the_serving_backend_mid_stream_continues_on_the_next(
    two_standins: dict[str, StandinProcess],
) -> None:
    llm = router_over({name: p.url for name, p in two_standins.items()})
    served: list[Endpoint] = []
    deltas: list[str] = []
    killed_at = 0.0
    resumed_after = None
    async for delta in llm.stream(request(), on_endpoint=served.append):
        deltas.append(delta)
        if len(deltas) == 3:
            two_standins[served[0].backend_name.split(":")[1]].kill()
            killed_at = time.perf_counter()
        elif len(deltas) == 4:
            resumed_after = time.perf_counter() - killed_at
    assert "".join(deltas) == MESSAGE, "no text repeated or lost"
    assert [e.backend_name for e in served] == ["ollama:a", "ollama:b"]
    assert resumed_after is not None and resumed_after < 1.0
    status = {s.backend: s for s in llm.status()}
    assert status["ollama:a"].failed == 1 and status["ollama:b"].served == 1


@pytest.fixture
def two_model_standins(tmp_path: Path) -> Iterator[dict[str, StandinProcess]]:
    """Two stand-ins answered by the real model through the default local engine,
    one llama.cpp thread and slot each (two cores here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_CACHE_DIR=str(MODEL_CACHE),
        MONGARS_LLAMACPP__THREADS="1",
        MONGARS_LLAMACPP__SLOTS="1",
        HF_HUB_OFFLINE="1",
    )
    processes: dict[str, StandinProcess] = {}
    try:
        for name in ("a", "b"):
            processes[name] = StandinProcess.start(env=env, timeout_s=120)
        yield processes
    finally:
        for process in processes.values():
            process.stop()


@pytest.mark.model
async def test_killing_a_real_model_mid_stream_continues_the_same_reply_on_the_next(
    two_model_standins: dict[str, StandinProcess],
) -> None:
    llm = router_over({name: p.url for name, p in two_model_standins.items()})
    ask = GenerationRequest(
        messages=[ChatMessage(role="user", content="Write two sentences about the sea.")],
        max_new_tokens=48,
        temperature=0,
    )
    # Each stand-in loads its model and answers once: greedy, the same reply from both.
    whole = await llm.generate(ask.model_copy(), "ollama:a")
    assert await llm.generate(ask.model_copy(), "ollama:b") == whole
    served: list[Endpoint] = []
    deltas: list[str] = []
    async for delta in llm.stream(ask.model_copy(), on_endpoint=served.append):
        deltas.append(delta)
        if len(deltas) == 4:
            two_model_standins[served[0].backend_name.split(":")[1]].kill()
    cut = "".join(deltas[:4])
    assert len(served) == 2 and served[0].backend_name != served[1].backend_name
    # The next stand-in continued the text already sent: nothing repeated, the same story.
    text = "".join(deltas)
    assert text[: len(cut) + 24] == whole[: len(cut) + 24], (whole, text)


async def test_a_backend_too_slow_for_the_deadline_is_a_clear_error_not_a_hang() -> None:
    with StandinProcess.start("--echo", "--delay-s", "1.0") as slow:
        llm = router_over({"slow": slow.url}, timeout_s=1.5)
        started = time.perf_counter()
        with pytest.raises(GenerationTimeoutError):
            await llm.generate(request())
        assert time.perf_counter() - started < 2.5


async def test_a_flapping_backend_opens_its_breaker_and_a_probe_closes_it() -> None:
    flapping = echo_standin()
    with StandinServer(flapping) as a, StandinServer(echo_standin()) as b:
        llm = router_over({"a": a.url, "b": b.url}, breaker_failures=2, breaker_reset_s=0.5)
        flapping.fail_next(503, "server busy", times=2)
        for _ in range(4):
            assert await llm.generate(request("hello there")) == "hello there"
        states = {s.backend: s.state for s in llm.status()}
        assert states["ollama:a"] == "open"
        calls_while_open = flapping.stats.requests["POST /api/chat"]
        for _ in range(3):
            await llm.generate(request("hello there"))
        assert flapping.stats.requests["POST /api/chat"] == calls_while_open
        await asyncio.sleep(0.55)
        assert {s.backend: s.state for s in llm.status()}["ollama:a"] == "half_open"
        await asyncio.gather(*(llm.generate(request("hello there")) for _ in range(4)))
        assert flapping.stats.requests["POST /api/chat"] == calls_while_open + 1, "one probe"
        assert {s.backend: s.state for s in llm.status()}["ollama:a"] == "closed"


async def test_every_backend_down_fails_fast_with_retry_after(
    two_standins: dict[str, StandinProcess],
) -> None:
    llm = router_over({name: p.url for name, p in two_standins.items()}, breaker_failures=1)
    for process in two_standins.values():
        process.kill()
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError) as failed:
        await llm.generate(request())
    assert time.perf_counter() - started < 2
    assert failed.value.retry_after is not None and failed.value.retry_after > 0


def test_a_user_keeps_getting_answers_while_backends_die_and_return(tmp_path: Path) -> None:
    a = StandinProcess.start("--echo", "--delay-s", "0.02")
    b = StandinProcess.start("--echo", "--delay-s", "0.02")
    ports = {name: p.url.rsplit(":", 1)[1] for name, p in (("a", a), ("b", b))}
    settings = server_settings(
        tmp_path,
        load_plugins=["memory", "reasoning", "speech", "server", "ollama"],
        ollama={"hosts": [f"a={a.url}", f"b={b.url}"], "timeout_s": 5},
        llm={
            "backend": "ollama:a",
            "roles": {"general": [{"backend": "ollama:a"}, {"backend": "ollama:b"}]},
            "breaker_failures": 1,
            "breaker_reset_s": 0.5,
            "first_token_timeout_s": 3,
        },
    )
    processes = {"a": a, "b": b}
    replies: list[int] = []
    try:
        with running(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            token = asyncio.run(_register(server.url))
            for round_number in range(12):
                victim = "ab"[(round_number // 3) % 2]  # a dies and returns, then b
                if round_number % 3 == 1:
                    processes[victim].kill()
                elif round_number % 3 == 2:
                    processes[victim].stop()  # reap the killed one
                    processes[victim] = StandinProcess.start(
                        "--echo", "--delay-s", "0.02", "--port", ports[victim]
                    )
                reply = client.post(
                    "/api/v1/conversation/chat",
                    json={"message": f"message {round_number} keeps going"},
                    headers=bearer(token),
                )
                assert reply.status_code == 200, reply.text
                assert f"message {round_number} keeps going" in reply.json()["response"]
                replies.append(round_number)
    finally:
        for process in processes.values():
            process.stop()
    assert replies == list(range(12))


async def _register(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        return await register(client, "alice")
