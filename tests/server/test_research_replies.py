"""Research over the HTTP API and the websocket: a reply carries the numbered sources it
was given, and an unknown subject is answered with a clarifying question."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from mongars_plugins.knowledge import research
from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import LiveServer, bearer, register
from tests.server.test_learning_routes import user_id
from tests.server.test_websocket import connect, opened, receive_until, ticket
from tests.test_research import ZORBLAX, Library, chunk


@pytest.fixture
def library() -> Library:
    return Library({})


@pytest.fixture
def live_server(make_server: Callable[..., LiveServer], library: Library) -> LiveServer:
    return make_server(
        plugins=[("research", research), ("library", library)],
        load_plugins=[*BUNDLED_WITHOUT_MODELS, "server", "instant", "research", "library"],
    )


SOURCE = {
    "number": 1,
    "kind": "document",
    "title": "servers.md › Staging",
    "text": ZORBLAX,
    "document_id": 1,
    "memory_id": None,
    "created_at": None,
}


async def test_http_and_websocket_replies_carry_their_sources(
    live_server: LiveServer, http: httpx.AsyncClient, library: Library
) -> None:
    token = await register(http, "alice")
    library.passages[user_id(live_server, "alice")] = [chunk(1, ZORBLAX, "servers.md › Staging")]
    answer = await http.post(
        "/api/v1/conversation/chat",
        json={"message": "Which port does Zorblax listen on?"},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["sources"] == [SOURCE]

    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        frame = {"id": "c1", "type": "chat.send", "data": {"message": "Zorblax port again?"}}
        await socket.send(json.dumps(frame))
        reply = (await receive_until(socket, "chat.reply"))[-1]
    assert reply["data"]["sources"] == [SOURCE]
    assert reply["data"]["ref"] == "c1"


async def test_an_unknown_subject_is_answered_with_a_clarifying_question(
    live_server: LiveServer, http: httpx.AsyncClient, library: Library
) -> None:
    token = await register(http, "bob")
    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        frame = {"id": "c1", "type": "chat.send", "data": {"message": "What is a flumpet?"}}
        await socket.send(json.dumps(frame))
        events = await receive_until(socket, "chat.reply")
    question = "I don't know what a flumpet is. Could you tell me what it is?"
    deltas = [event["data"]["delta"] for event in events if event["type"] == "chat.delta"]
    assert "".join(deltas) == question
    reply = events[-1]["data"]
    assert reply["response"] == question and reply["sources"] == []
    assert reply["usage"]["completion_tokens"] == 0
    history = await http.get("/api/v1/conversation/history", headers=bearer(token))
    assert [item["response"] for item in history.json()] == [question]
