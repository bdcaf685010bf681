"""The official ``openai`` client against the server's OpenAI-compatible API."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import openai
import pytest

from mongars_core import hookimpl
from mongars_core.errors import BackendError, MissingDependencyError
from mongars_core.hookspecs import Register
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from tests.conftest import BUNDLED_WITHOUT_MODELS, run_mongars
from tests.server.conftest import LiveServer, bearer, register


async def new_key(http: httpx.AsyncClient, token: str, name: str = "test") -> dict[str, object]:
    response = await http.post("/api/v1/keys", json={"name": name}, headers=bearer(token))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    assert str(body["key"]).startswith("mgs_")
    return body


def client_for(server: LiveServer, key: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=str(key), max_retries=0)


async def test_completions_without_and_with_streaming(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    key = (await new_key(http, token))["key"]
    async with client_for(live_server, key) as client:
        models = [model.id async for model in client.models.list()]
        assert models == ["mongars"], "only what the operator exposes"

        completion = await client.chat.completions.create(
            model="mongars",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "What is 12 * 7?"},
            ],
        )
        assert completion.object == "chat.completion"
        # The monGARS pipeline answered: the reasoning plugin computed 12 * 7 and,
        # as the (echo) model did not state it, put the verified fact first.
        text = completion.choices[0].message.content
        assert text == "12 * 7 = 84.\n\nYou said: What is 12 * 7?"
        assert completion.choices[0].finish_reason == "stop"
        usage = completion.usage
        assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

        stream = await client.chat.completions.create(
            model="mongars",
            messages=[{"role": "user", "content": "stream me some words"}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks]
    assert len([piece for piece in pieces if piece]) >= 5, "tokens arrive one by one"
    assert "".join(pieces) == "You said: stream me some words"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({chunk.id for chunk in chunks}) == 1

    history = (await http.get("/api/v1/conversation/history", headers=bearer(token))).json()
    assert [item["query"] for item in history] == ["stream me some words", "What is 12 * 7?"]
    assert [item["session_id"] for item in history] == ["openai", "openai"]


async def test_a_named_backend_and_the_user_field_as_session(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"exposed_models": "mongars,instant"})
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        token = await register(http, "alice")
        key = (await new_key(http, token))["key"]
        async with client_for(server, key) as client:
            assert [model.id async for model in client.models.list()] == ["mongars", "instant"]
            completion = await client.chat.completions.create(
                model="instant", messages=[{"role": "user", "content": "hello"}], user="notes"
            )
        history = (await http.get("/api/v1/conversation/history", headers=bearer(token))).json()
    assert completion.model == "instant"
    assert completion.choices[0].message.content == "You said: hello"
    assert history[0]["session_id"] == "notes"


async def test_keys_are_revoked_at_once(live_server: LiveServer, http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    created = await new_key(http, token, "laptop")
    listed = (await http.get("/api/v1/keys", headers=bearer(token))).json()["keys"]
    assert [(k["name"], k["prefix"]) for k in listed] == [("laptop", str(created["key"])[:10])]
    assert "key" not in listed[0], "a key is shown only when created"

    revoked = await http.delete(f"/api/v1/keys/{created['id']}", headers=bearer(token))
    assert revoked.status_code == 204
    again = await http.delete(f"/api/v1/keys/{created['id']}", headers=bearer(token))
    assert again.status_code == 404
    async with client_for(live_server, created["key"]) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="mongars", messages=[{"role": "user", "content": "hi"}]
            )


async def test_errors_use_openai_shapes(live_server: LiveServer, http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    key = (await new_key(http, token))["key"]
    async with client_for(live_server, key) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(
                model="gpt-9", messages=[{"role": "user", "content": "hi"}]
            )
        assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
        with pytest.raises(openai.UnprocessableEntityError):
            await client.chat.completions.create(
                model="mongars", messages=[{"role": "system", "content": "no user here"}]
            )
        with pytest.raises(openai.UnprocessableEntityError):
            await client.chat.completions.create(
                model="mongars", messages=[{"role": "user", "content": "   "}]
            )
    async with client_for(live_server, "mgs_not-a-real-key") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_keys_from_the_cli(live_server: LiveServer, http: httpx.AsyncClient) -> None:
    await register(http, "carol")
    env = {
        **os.environ,
        "MONGARS_DATA_DIR": str(live_server.settings.data_dir),
        "MONGARS_LOAD_PLUGINS": "server",
    }
    created = await asyncio.to_thread(
        run_mongars, "keys", "create", "--user", "carol", "--name", "cli", env=env
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = re.search(r"key (\d+) for carol", created.stderr)
    assert key.startswith("mgs_") and key_id is not None
    assert (await http.get("/v1/models", headers=bearer(key))).status_code == 200

    listed = await asyncio.to_thread(run_mongars, "keys", "list", "--user", "carol", env=env)
    assert key[:10] in listed.stdout and key not in listed.stdout
    revoke = ("keys", "revoke", key_id[1], "--user", "carol")
    revoked = await asyncio.to_thread(run_mongars, *revoke, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert (await http.get("/v1/models", headers=bearer(key))).status_code == 401
    again = await asyncio.to_thread(run_mongars, *revoke, env=env)
    assert again.returncode == 1
    assert "no live API key" in again.stderr


class LazyBackend:
    """A backend that loads on first use, as the local model does (torch, weights)."""

    def __init__(self) -> None:
        self.loads = 0
        self.generations = 0

    @property
    def loaded(self) -> bool:
        return self.loads > 0

    async def load(self) -> None:
        self.loads += 1

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.generations += 1
        yield "loaded and answered"


class BackendsPlugin:
    """Registers the given backends by name, as a backend plugin would."""

    def __init__(self, **backends: object) -> None:
        self.backends = backends

    @hookimpl
    def mongars_register_llm_backends(self, register: Register, settings: Settings) -> None:
        for name, backend in self.backends.items():
            register(name, backend)


def with_backends(
    make_server: Callable[..., LiveServer], **kwargs: object
) -> Callable[..., LiveServer]:
    def start(**overrides: object) -> LiveServer:
        plugin = BackendsPlugin(**kwargs)
        return make_server(
            plugins=[("extra-backends", plugin)],
            load_plugins=[*BUNDLED_WITHOUT_MODELS, "server", "instant", "extra-backends"],
            **overrides,
        )

    return start


async def _key_for(server: LiveServer, username: str = "alice") -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        token = await register(http, username)
        return str((await new_key(http, token))["key"])


async def test_a_user_cannot_list_or_load_a_backend_the_operator_did_not_expose(
    make_server: Callable[..., LiveServer],
) -> None:
    lazy = LazyBackend()
    server = with_backends(make_server, local=lazy)()
    key = await _key_for(server)
    async with client_for(server, key) as client:
        assert [model.id async for model in client.models.list()] == ["mongars"]
        for name in ("local", "instant", "gpt-9"):
            with pytest.raises(openai.NotFoundError) as missing:
                await client.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": "hi"}]
                )
            assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
        answered = await client.chat.completions.create(
            model="mongars", messages=[{"role": "user", "content": "hi"}]
        )
    assert answered.choices[0].message.content == "You said: hi"
    assert (lazy.loads, lazy.generations) == (0, 0), "the unexposed backend was never loaded"

    # Raw HTTP, streaming too: OpenAI's error shape, a 404, never a 500.
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        raw = await http.post(
            "/v1/chat/completions",
            json={"model": "local", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            headers=bearer(key),
        )
    assert raw.status_code == 404
    error = raw.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "'local'" in error["message"] and "mongars" in error["message"]
    assert lazy.loads == 0


async def test_exposed_models_are_listed_when_registered_and_served(
    make_server: Callable[..., LiveServer],
) -> None:
    lazy = LazyBackend()
    server = with_backends(make_server, local=lazy)(
        server={"exposed_models": "local, mongars, ghost"}
    )
    key = await _key_for(server)
    async with client_for(server, key) as client:
        # "ghost" is exposed but no plugin registers it: not listed, not served.
        assert [model.id async for model in client.models.list()] == ["local", "mongars"]
        completion = await client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="ghost", messages=[{"role": "user", "content": "hi"}]
            )
    assert completion.choices[0].message.content == "loaded and answered"
    assert lazy.loads == 1


class CountingTokenizerBackend:
    """Echoes; counts tokens as words (a TokenCounter), so usage can be checked exactly."""

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        return sum(len(message.content.split()) for message in messages)

    def count_tokens(self, text: str) -> int | None:
        return len(text.split())

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.prompts.append(list(request.messages))
        for index, word in enumerate(f"You said: {request.messages[-1].content}".split(" ")):
            yield word if index == 0 else " " + word


async def test_usage_is_counted_by_the_backends_tokenizer_and_streamed_when_asked(
    make_server: Callable[..., LiveServer],
) -> None:
    backend = CountingTokenizerBackend()
    server = make_server(backend)
    key = await _key_for(server)
    async with client_for(server, key) as client:
        completion = await client.chat.completions.create(
            model="mongars", messages=[{"role": "user", "content": "four words right here"}]
        )
        prompt = sum(len(m.content.split()) for m in backend.prompts[-1])
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == prompt
        assert completion.usage.completion_tokens == 6
        assert completion.usage.total_tokens == prompt + 6

        stream = await client.chat.completions.create(
            model="mongars",
            messages=[{"role": "user", "content": "stream with usage please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        plain = await client.chat.completions.create(
            model="mongars",
            messages=[{"role": "user", "content": "stream without usage"}],
            stream=True,
        )
        plain_chunks = [chunk async for chunk in plain]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 6  # "You said: stream with usage please"
    assert last.usage.prompt_tokens == sum(len(m.content.split()) for m in backend.prompts[1])
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in plain_chunks)
    assert plain_chunks[-1].choices[0].finish_reason == "stop"


async def test_usage_is_estimated_without_a_tokenizer(live_server: LiveServer) -> None:
    key = await _key_for(live_server)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as http:
        answer = await http.post(
            "/v1/chat/completions",
            json={"model": "mongars", "messages": [{"role": "user", "content": "x" * 400}]},
            headers=bearer(key),
        )
    usage = answer.json()["usage"]
    # About four characters a token: the 410-character reply is about 103 tokens.
    assert usage["completion_tokens"] == 103
    assert usage["prompt_tokens"] >= 100
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


class CappedBackend:
    """Writes until the token cap, and says so, as a real backend reports it."""

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        request.outcome.finish_reason = "length"
        request.outcome.tokens = request.max_new_tokens
        for word in ["A", " long", " story", " that", " goes", " on", " and", " on"]:
            yield word


async def test_a_reply_cut_at_the_cap_finishes_with_length(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(CappedBackend(), llm={"max_new_tokens": 8})
    key = await _key_for(server)
    async with client_for(server, key) as client:
        completion = await client.chat.completions.create(
            model="mongars", messages=[{"role": "user", "content": "tell me a story"}]
        )
        stream = await client.chat.completions.create(
            model="mongars", messages=[{"role": "user", "content": "another story"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert completion.choices[0].finish_reason == "length"
    assert chunks[-1].choices[0].finish_reason == "length"


class FailingBackend:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def generate(self, request: GenerationRequest) -> str:
        raise self.error

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        raise self.error
        yield ""  # pragma: no cover - makes this an async generator


@pytest.mark.parametrize(
    ("error", "status", "code", "said"),
    [
        (
            MissingDependencyError("ollama", "ollama"),
            503,
            "missing_dependency",
            "ollama is not installed; install it with: pip install",
        ),
        (
            BackendError("the model server answered 500: out of memory"),
            503,
            "backend_unavailable",
            "out of memory",
        ),
    ],
)
async def test_errors_name_the_cause_the_log_knows(
    make_server: Callable[..., LiveServer], error: Exception, status: int, code: str, said: str
) -> None:
    server = make_server(FailingBackend(error), llm={"retries": 0})
    key = await _key_for(server)
    async with client_for(server, key) as client:
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.create(
                model="mongars", messages=[{"role": "user", "content": "hi"}]
            )
    assert failed.value.status_code == status
    body = failed.value.body
    assert isinstance(body, dict) and body["code"] == code and body["type"] == "server_error"
    assert said in body["message"]

    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        streamed = await http.post(
            "/v1/chat/completions",
            json={
                "model": "mongars",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers=bearer(key),
        )
    assert streamed.status_code == status, "a stream that fails before its first token"
    assert said in streamed.json()["error"]["message"]


async def test_the_message_limit_is_the_one_setting(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(max_message_chars=40)
    key = await _key_for(server)
    async with client_for(server, key) as client:
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            await client.chat.completions.create(
                model="mongars", messages=[{"role": "user", "content": "x" * 41}]
            )
        fits = await client.chat.completions.create(
            model="mongars", messages=[{"role": "user", "content": "x" * 40}]
        )
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "message_too_long"
    assert "the limit is 40" in body["message"]
    assert fits.choices[0].message.content == "You said: " + "x" * 40


async def test_a_stream_that_fails_midway_ends_with_an_openai_error_chunk(
    make_server: Callable[..., LiveServer],
) -> None:
    class HalfBackend:
        async def generate(self, request: GenerationRequest) -> str:
            raise AssertionError("streamed only")

        async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
            yield "Half"
            raise MissingDependencyError("ollama", "ollama")

    server = make_server(HalfBackend(), llm={"retries": 0})
    key = await _key_for(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        streamed = await http.post(
            "/v1/chat/completions",
            json={
                "model": "mongars",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers=bearer(key),
        )
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "missing_dependency" and "ollama is not installed" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
