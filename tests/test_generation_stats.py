"""What a turn reports of its generation: usage, time to first token, speed, adapter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mongars_core.adapters import AdapterRegistry
from mongars_core.types import GenerationRequest
from mongars_testkit.backends import InstantBackend


class ReportingBackend:
    """Streams a fixed reply and reports its counts the way the local engines do."""

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        for word in ["Four", " words", " of", " reply."]:
            yield word
        request.outcome.prompt_tokens = 42
        request.outcome.tokens = 5
        request.outcome.tokens_per_second = 123.4
        request.outcome.finish_reason = "stop"
        if request.adapter is not None:
            request.outcome.adapter = request.adapter.id


async def test_a_backend_that_counts_sets_usage_speed_and_adapter(make_assistant: Any) -> None:
    backend = ReportingBackend()
    assistant = await make_assistant(backend=backend)
    reply = await assistant.chat("alice", "hello there")
    assert reply.usage.prompt_tokens == 42
    assert reply.usage.completion_tokens == 5
    assert reply.usage.counted is True
    assert reply.generation.tokens_per_second == 123.4
    assert reply.generation.time_to_first_token_ms is not None
    assert reply.generation.time_to_first_token_ms >= 0
    assert reply.adapter is None
    assert "generation" in json.loads(reply.model_dump_json())


async def test_without_backend_counts_speed_is_measured_from_the_stream(
    make_assistant: Any,
) -> None:
    backend = InstantBackend(lambda request: "one two three four five six", delay_s=0.02)
    assistant = await make_assistant(backend=backend)
    reply = await assistant.chat("alice", "hello there")
    assert reply.usage.counted is False
    # Six words 20 ms apart: the first arrives after about 20 ms, the rest at
    # about 50 words a second; estimated tokens (characters / 4) set the count.
    assert reply.generation.time_to_first_token_ms is not None
    assert reply.generation.time_to_first_token_ms >= 15
    assert reply.generation.tokens_per_second is not None
    assert 0 < reply.generation.tokens_per_second < 200


def _register(tmp_path: Path, registry: AdapterRegistry, name: str) -> None:
    source = tmp_path / f"{name}-files"
    source.mkdir()
    (source / "adapter_config.json").write_text("{}")
    (source / "adapter_model.safetensors").write_bytes(b"weights")
    registry.register(source, name=name, version="1", base_model="smollm2-135m-instruct")
    registry.activate(name, "1")


async def test_a_users_active_adapter_goes_with_their_turns_only(
    make_assistant: Any, tmp_path: Path
) -> None:
    backend = ReportingBackend()
    assistant = await make_assistant(backend=backend)
    registry = assistant.services.adapter_registry()
    _register(tmp_path, registry, "alice-style")
    registry.assign("alice", "alice-style")

    alice = await assistant.chat("alice", "hello there")
    bob = await assistant.chat("bob", "hello there")

    alice_request, bob_request = backend.requests
    assert alice_request.adapter is not None
    assert alice_request.adapter.id == "alice-style@1"
    assert alice_request.cacheable is False  # another user's identical request must not share it
    assert alice.adapter == "alice-style@1"
    assert bob_request.adapter is None
    assert bob.adapter is None


async def test_a_damaged_adapter_registry_costs_the_adapter_not_the_turn(
    make_assistant: Any,
) -> None:
    backend = ReportingBackend()
    assistant = await make_assistant(backend=backend)
    registry = assistant.services.adapter_registry()
    registry.root.mkdir(parents=True, exist_ok=True)
    registry.manifest_path.write_text("{not json")

    reply = await assistant.chat("alice", "hello there")

    assert reply.text
    assert reply.adapter is None
    assert any("adapter" in warning for warning in reply.warnings), reply.warnings


async def test_an_adapter_the_backend_did_not_apply_is_a_warning(
    make_assistant: Any, tmp_path: Path
) -> None:
    backend = InstantBackend()  # applies no adapter
    assistant = await make_assistant(backend=backend)
    registry = assistant.services.adapter_registry()
    _register(tmp_path, registry, "alice-style")
    registry.assign("alice", "alice-style")

    alice = await assistant.chat("alice", "hello there")
    bob = await assistant.chat("bob", "hello there")

    assert alice.adapter is None
    assert alice.warnings == [
        "your adapter alice-style@1 was not applied (instant cannot use it): "
        "the base model answered"
    ]
    assert bob.warnings == []
