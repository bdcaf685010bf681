"""The official ``openai`` client against the server's OpenAI-compatible API."""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import openai
import pytest

from tests.conftest import run_mongars
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
        assert models[0] == "mongars" and "instant" in models

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
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    key = (await new_key(http, token))["key"]
    async with client_for(live_server, key) as client:
        completion = await client.chat.completions.create(
            model="instant", messages=[{"role": "user", "content": "hello"}], user="notes"
        )
    assert completion.model == "instant"
    assert completion.choices[0].message.content == "You said: hello"
    history = (await http.get("/api/v1/conversation/history", headers=bearer(token))).json()
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
