"""An Ollama host URL with a user and password never reaches a client or the log,
and no client learns the backend's internal address: over real HTTP and websockets
against a server whose Ollama host cannot be reached."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import BUNDLED_WITHOUT_MODELS, run_mongars
from tests.server.conftest import PASSWORD, LiveServer, bearer, register
from tests.server.test_websocket import connect, opened, receive_until, ticket

SECRET = "OllamaS3cret"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def port() -> int:
    return closed_port()


@pytest.fixture
def ollama_server(make_server: Callable[..., LiveServer], port: int) -> LiveServer:
    return make_server(
        load_plugins=[*BUNDLED_WITHOUT_MODELS, "server", "ollama"],
        llm={"backend": "ollama", "retries": 0, "breaker_failures": 100},
        ollama={"hosts": [f"http://ouser:{SECRET}@127.0.0.1:{port}"]},
        server={"exposed_models": ["mongars", "ollama"]},
    )


def assert_private(text: str, port: int) -> None:
    assert SECRET not in text
    assert f":{port}" not in text
    assert "127.0.0.1" not in text


async def test_no_client_sees_the_ollama_password_or_address(
    ollama_server: LiveServer, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=ollama_server.url, timeout=20) as http:
        token = await register(http, "alice")

        native = await http.post(
            "/api/v1/conversation/chat", json={"message": "hello"}, headers=bearer(token)
        )
        assert native.status_code == 503
        detail = native.json()["detail"]
        assert "the LLM backend 'ollama' cannot be reached" in detail
        assert_private(native.text, port)

        async with connect(ollama_server, await ticket(http, token)) as ws:
            await opened(ws)
            await ws.send(
                json.dumps({"id": "c1", "type": "chat.send", "data": {"message": "hello"}})
            )
            failed = (await receive_until(ws, "chat.error"))[-1]
        assert failed["data"]["code"] == "backend_unavailable"
        assert "the LLM backend 'ollama' cannot be reached" in failed["data"]["message"]
        assert_private(json.dumps(failed), port)

        key = (await http.post("/api/v1/keys", json={"name": "k"}, headers=bearer(token))).json()
        for stream in (False, True):
            openai = await http.post(
                "/v1/chat/completions",
                json={
                    "model": "ollama",
                    "stream": stream,
                    "messages": [{"role": "user", "content": "hello"}],
                },
                headers=bearer(key["key"]),
            )
            assert "cannot be reached" in openai.text, openai.text
            assert_private(openai.text, port)

    # The administrator's health page names the host, the password masked.
    made = run_mongars(
        "users",
        "create-admin",
        "root",
        stdin=PASSWORD + "\n",
        env={
            **os.environ,
            "MONGARS_DATA_DIR": str(ollama_server.settings.data_dir),
            "MONGARS_LOAD_PLUGINS": "server",
        },
    )
    assert made.returncode == 0, made.stderr
    async with httpx.AsyncClient(base_url=ollama_server.url, timeout=20) as http:
        login = await http.post(
            "/api/v1/auth/login", json={"username": "root", "password": PASSWORD}
        )
        health = await http.get("/api/v1/llm/health", headers=bearer(login.json()["access_token"]))
    assert health.status_code == 200
    errors = [e["last_error"] for e in health.json()["endpoints"] if e["last_error"]]
    assert errors, health.text
    assert SECRET not in health.text
    assert f"http://ouser:***@127.0.0.1:{port}" in health.text

    logged = "\n".join(
        record.getMessage() + (caplog.text if record.exc_info else "") for record in caplog.records
    )
    assert f"127.0.0.1:{port}" in logged  # the log does name the host, for the operator
    assert SECRET not in logged
    assert SECRET not in caplog.text
