"""Idempotency keys over real HTTP, websockets and the OpenAI client: a client that
retries a turn (after a timeout, or after the server was killed) stores it once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import LiveServer, bearer, register
from tests.server.test_openai import client_for, new_key
from tests.server.test_websocket import connect, opened, receive_until, ticket

CHAT = "/api/v1/conversation/chat"
ROOT = Path(__file__).resolve().parents[2]
STATEMENT = "My brother Tom is a carpenter in Montreal."


async def _history(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await http.get("/api/v1/conversation/history", headers=bearer(token))
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()
    return items


async def test_the_http_chat_stores_a_retried_turn_once(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    headers = {**bearer(token), "Idempotency-Key": "turn-0001"}
    first = await http.post(CHAT, json={"message": STATEMENT}, headers=headers)
    again = await http.post(CHAT, json={"message": STATEMENT}, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["replayed"] is False and again.json()["replayed"] is True
    assert again.json()["turn_id"] == first.json()["turn_id"]
    assert again.json()["response"] == first.json()["response"]
    assert len(await _history(http, token)) == 1
    memories = (await http.get("/api/v1/memories", headers=bearer(token))).json()

    reused = await http.post(CHAT, json={"message": "something else"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert "already used for another message" in reused.json()["detail"]
    clash = await http.post(
        CHAT, json={"message": STATEMENT, "idempotency_key": "other"}, headers=headers
    )
    assert clash.status_code == 422 and "differ" in clash.json()["detail"]
    bad = await http.post(
        CHAT, json={"message": STATEMENT}, headers={**bearer(token), "Idempotency-Key": "a b"}
    )
    assert bad.status_code == 422 and "idempotency key" in bad.json()["detail"]

    # Keys are per account: bob's turn-0001 is his own turn.
    bob = await register(http, "bob")
    his = await http.post(
        CHAT, json={"message": STATEMENT}, headers={**bearer(bob), "Idempotency-Key": "turn-0001"}
    )
    assert his.json()["replayed"] is False and his.json()["turn_id"] != first.json()["turn_id"]
    assert len(await _history(http, token)) == 1
    assert (await http.get("/api/v1/memories", headers=bearer(token))).json() == memories


async def test_concurrent_http_retries_store_one_turn(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    headers = {**bearer(token), "Idempotency-Key": "race-1"}
    answers = await asyncio.gather(
        *(http.post(CHAT, json={"message": STATEMENT}, headers=headers) for _ in range(5))
    )
    assert [answer.status_code for answer in answers] == [200] * 5
    assert len({answer.json()["turn_id"] for answer in answers}) == 1
    assert sorted(answer.json()["replayed"] for answer in answers) == [False] + [True] * 4
    assert len(await _history(http, token)) == 1


async def test_the_websocket_stores_a_retried_turn_once(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    frame = {"message": STATEMENT, "session_id": "s1", "idempotency_key": "ws-1"}
    replies = []
    for ref in ("a", "b"):  # the second as a client resends after reconnecting
        async with connect(live_server, await ticket(http, token)) as socket:
            await opened(socket)
            await socket.send(json.dumps({"id": ref, "type": "chat.send", "data": frame}))
            events = await receive_until(socket, "chat.reply")
            replies.append(events[-1]["data"])
    assert replies[0]["turn_id"] == replies[1]["turn_id"]
    assert replies[1]["replayed"] is True and replies[1]["response"] == replies[0]["response"]
    assert len(await _history(http, token)) == 1

    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        other = {**frame, "message": "a different message"}
        await socket.send(json.dumps({"id": "c", "type": "chat.send", "data": other}))
        events = await receive_until(socket, "chat.error")
    assert events[-1]["data"]["code"] == "idempotency_key_reused"


async def test_the_openai_api_stores_a_retried_turn_once(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    key = (await new_key(http, token))["key"]
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": STATEMENT}]
    async with client_for(live_server, key) as client:
        texts = []
        for header in ("Idempotency-Key", "X-Client-Request-Id"):
            for _ in range(2):
                completion = await client.chat.completions.create(
                    model="mongars",
                    messages=messages,
                    user="notes",
                    extra_headers={header: f"{header}-1"},
                )
                texts.append(completion.choices[0].message.content)
        streamed = await client.chat.completions.create(
            model="mongars",
            messages=messages,
            user="notes",
            stream=True,
            extra_headers={"Idempotency-Key": "Idempotency-Key-1"},
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in streamed if chunk.choices]
        # The same key with another `user` (session) is another request: refused.
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            await client.chat.completions.create(
                model="mongars",
                messages=messages,
                user="elsewhere",
                extra_headers={"Idempotency-Key": "Idempotency-Key-1"},
            )
    assert len(set(texts)) == 1 and "".join(pieces) == texts[0]
    assert refused.value.body["code"] == "idempotency_key_reused"  # type: ignore[index]
    history = await _history(http, token)
    assert len(history) == 2, "one turn per key"
    assert {item["session_id"] for item in history} == {"notes"}


# -- a real server process, killed with SIGKILL -------------------------------------

SERVER_SCRIPT = """
import asyncio, os, pathlib, sys
import uvicorn
from mongars_core import hookimpl
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_server import create_app
from mongars_testkit import BackendPlugin, InstantBackend

class HangAfterStoring:
    '''Once the turn is committed (an after-commit callback): say so, then never answer.'''

    @hookimpl
    async def mongars_turn_completed(self, turn, reply, writes):
        marker = os.environ.get("HANG_MARKER")
        if marker:

            async def hang():
                pathlib.Path(marker).write_text(turn.turn_id)
                await asyncio.sleep(3600)

            writes.after_commit(hang)

settings = Settings()
plugins = [("instant", BackendPlugin(InstantBackend())), ("hang", HangAfterStoring())]
app = create_app(settings, plugin_manager=build_plugin_manager(settings, plugins=plugins))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server_process(
    script: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the server exited: {process.stderr.read() if process.stderr else ''}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start within 60 s")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


async def test_a_retry_after_the_server_was_killed_gets_the_stored_turn(
    tmp_path: Path, database_url: str
) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    marker = tmp_path / "stored"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_DATABASE_URL=database_url,
        MONGARS_LLM__BACKEND="instant",
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_STAGE_TIMEOUT_S="600",
        MONGARS_LOAD_PLUGINS=",".join([*BUNDLED_WITHOUT_MODELS, "server", "instant", "hang"]),
    )
    headers = {"Idempotency-Key": "after-crash-1"}
    with server_process(script, {**env, "HANG_MARKER": str(marker)}) as (url, process):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            token = await register(http, "alice")
            headers.update(bearer(token))
            sent = asyncio.create_task(
                http.post(CHAT, json={"message": STATEMENT}, headers=headers)
            )
            while not marker.exists():  # the turn is committed; the reply not yet sent
                assert not sent.done(), "the server answered before it was killed"
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            with pytest.raises(httpx.TransportError):
                await sent  # the client never read a reply
    stored_turn = marker.read_text()

    with server_process(script, env) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            retried = await http.post(CHAT, json={"message": STATEMENT}, headers=headers)
            history = await _history(http, headers["Authorization"].split()[1])
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["turn_id"] == stored_turn and body["replayed"] is True
    assert body["response"] == f"You said: {STATEMENT}"
    assert [(item["query"], item["response"]) for item in history] == [
        (STATEMENT, body["response"])
    ]
