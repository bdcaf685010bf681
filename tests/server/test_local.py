"""``POST /api/v1/local/chat``: the route ``mongars chat`` uses on this machine only."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mongars_core.local_server import (
    CREDENTIAL_HEADER,
    LOCAL_CHAT_PATH,
    local_credential,
    read_secret,
)
from mongars_core.settings import Settings
from mongars_testkit import BackendPlugin, InstantBackend
from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import LiveServer, running, server_settings


def credential(settings: Settings) -> str:
    secret = read_secret(settings)
    assert secret is not None
    return local_credential(secret)


def events(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


async def test_the_local_route_streams_a_library_users_turn(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        response = await client.post(
            LOCAL_CHAT_PATH,
            json={"user_id": "alice", "message": "hello there", "session_id": "s1"},
            headers={CREDENTIAL_HEADER: credential(live_server.settings)},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = events(response)
    tokens = [line["delta"] for line in lines if line["type"] == "token"]
    assert "".join(tokens) == "You said: hello there" and len(tokens) > 1
    assert lines[-1]["type"] == "reply"
    reply = lines[-1]["reply"]
    assert isinstance(reply, dict)
    assert (reply["user_id"], reply["session_id"]) == ("alice", "s1")
    turns = live_server.call(live_server.state.assistant.store.history("alice", 10))
    assert [(turn.message, turn.session_id) for turn in turns] == [("hello there", "s1")]


async def test_the_local_route_gives_the_pipelines_errors(live_server: LiveServer) -> None:
    headers = {CREDENTIAL_HEADER: credential(live_server.settings)}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        empty = await client.post(
            LOCAL_CHAT_PATH, json={"user_id": "alice", "message": "  "}, headers=headers
        )
        unknown = await client.post(
            LOCAL_CHAT_PATH,
            json={"user_id": "alice", "message": "hi", "backend": "nope"},
            headers=headers,
        )
    assert (empty.status_code, empty.json()["detail"]) == (422, "the message is empty")
    # An unknown name says so (the CLI then reports it rather than running in-process).
    assert unknown.status_code == 404
    assert unknown.json()["detail"].startswith("no LLM backend named 'nope'")


@pytest.mark.parametrize("exposed", [False, True])
async def test_the_local_route_serves_only_exposed_backends(
    make_server: Callable[..., LiveServer], exposed: bool
) -> None:
    spare = InstantBackend()  # a second backend; it keeps the requests it gets
    server = make_server(
        plugins=[("spare", BackendPlugin(spare, "spare"))],
        load_plugins=[*BUNDLED_WITHOUT_MODELS, "server", "instant", "spare"],
        server={"exposed_models": ["mongars", "spare"] if exposed else ["mongars"]},
    )
    headers = {CREDENTIAL_HEADER: credential(server.settings)}
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        asked = await client.post(
            LOCAL_CHAT_PATH,
            json={"user_id": "alice", "message": "hi", "backend": "spare"},
            headers=headers,
        )
        default = await client.post(
            LOCAL_CHAT_PATH, json={"user_id": "alice", "message": "hi"}, headers=headers
        )
    assert events(default)[-1]["type"] == "reply"
    if exposed:
        assert asked.status_code == 200
        assert events(asked)[-1]["reply"]["backend"] == "spare"  # type: ignore[index]
        assert len(spare.requests) == 1
    else:
        assert asked.status_code == 403
        assert "MONGARS_SERVER__EXPOSED_MODELS" in asked.json()["detail"]
        assert spare.requests == []


@pytest.mark.parametrize("given", [None, "", "0" * 64, "not even hex"])
async def test_the_local_route_refuses_a_missing_or_wrong_credential(
    live_server: LiveServer, given: str | None
) -> None:
    headers = {} if given is None else {CREDENTIAL_HEADER: given}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        response = await client.post(
            LOCAL_CHAT_PATH, json={"user_id": "alice", "message": "hi"}, headers=headers
        )
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert live_server.call(live_server.state.assistant.store.user_exists("alice")) is False


def test_another_servers_credential_is_refused(make_server: Callable[..., LiveServer]) -> None:
    first, second = make_server(), make_server()
    response = httpx.post(
        f"{second.url}{LOCAL_CHAT_PATH}",
        json={"user_id": "alice", "message": "hi"},
        headers={CREDENTIAL_HEADER: credential(first.settings)},
    )
    assert response.status_code == 401


def _own_address() -> str | None:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


def test_the_local_route_refuses_a_client_that_is_not_on_loopback(tmp_path: Path) -> None:
    address = _own_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    settings = server_settings(tmp_path)
    with running(settings, InstantBackend(), host="0.0.0.0") as server:
        port = server.url.rsplit(":", 1)[1]
        # The right credential, from a non-loopback address (Host says loopback).
        response = httpx.post(
            f"http://{address}:{port}{LOCAL_CHAT_PATH}",
            json={"user_id": "alice", "message": "hi"},
            headers={CREDENTIAL_HEADER: credential(settings), "Host": f"127.0.0.1:{port}"},
        )
        assert response.status_code == 403
        assert response.json()["detail"] == "the local route answers only this machine"
        from_loopback = httpx.post(
            f"http://127.0.0.1:{port}{LOCAL_CHAT_PATH}",
            json={"user_id": "alice", "message": "hi"},
            headers={CREDENTIAL_HEADER: credential(settings)},
        )
        assert from_loopback.status_code == 200


MODEL_PLUGINS = [*BUNDLED_WITHOUT_MODELS, "server", "cuda", "llamacpp"]
"""The server's plugins with both local engines: ``local`` is the default engine."""

MODEL_LLM = {
    "backend": "local",
    "max_new_tokens": 24,
    "temperature": 0,
    "timeout_s": 120,
    "first_token_timeout_s": 60,
}


@pytest.mark.model
async def test_the_local_route_streams_the_real_model_on_the_default_engine(
    make_server: Callable[..., LiveServer],
) -> None:
    from mongars_core.local_engine import LocalEngine
    from mongars_plugins.llamacpp.backend import avx2_missing

    server = make_server(load_plugins=MODEL_PLUGINS, llm=MODEL_LLM)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        response = await client.post(
            LOCAL_CHAT_PATH,
            json={"user_id": "alice", "message": "Say hi."},
            headers={CREDENTIAL_HEADER: credential(server.settings)},
        )
    assert response.status_code == 200, response.text
    lines = events(response)
    tokens = [line["delta"] for line in lines if line["type"] == "token"]
    assert len(tokens) > 1 and "".join(tokens).strip()
    reply = lines[-1]["reply"]
    assert isinstance(reply, dict)
    assert reply["backend"] == "local"
    assert reply["usage"]["counted"] is True and reply["usage"]["completion_tokens"] <= 24
    _, local = server.state.assistant.router.get("local")
    assert isinstance(local, LocalEngine)
    assert local.engine_name == ("torch" if avx2_missing() else "llamacpp")
