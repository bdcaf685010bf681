"""Conversations over real HTTP and websockets: list, create, rename, delete, turns;
stopping a turn; the one message limit; what a reply remembered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mongars_core.errors import ConversationNotFoundError, InvalidInputError
from mongars_core.types import GenerationRequest
from tests.server.conftest import LiveServer, bearer, register
from tests.server.test_websocket import connect, opened, receive, receive_until, ticket


async def chat(
    http: httpx.AsyncClient, token: str, message: str, session_id: str = "default"
) -> httpx.Response:
    return await http.post(
        "/api/v1/conversation/chat",
        json={"message": message, "session_id": session_id},
        headers=bearer(token),
    )


async def conversations(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    listed = await http.get("/api/v1/conversations", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


async def test_conversations_are_created_listed_renamed_and_deleted(
    http: httpx.AsyncClient,
) -> None:
    token = await register(http, "alice")
    assert await conversations(http, token) == []

    created = await http.post(
        "/api/v1/conversations", json={"title": "Trip  plans"}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    trip = created.json()
    assert trip["title"] == "Trip plans" and trip["turns"] == 0
    assert trip["session_id"].startswith("c-")
    named = await http.post(
        "/api/v1/conversations", json={"session_id": "mine.1"}, headers=bearer(token)
    )
    assert named.status_code == 201 and named.json()["session_id"] == "mine.1"
    assert named.json()["title"] == ""
    assert (await chat(http, token, "Book a train to Lyon", trip["session_id"])).status_code == 200

    # A turn in a new session creates its conversation, named after the first message.
    long_message = "My dog Rex loves long walks along the river every single morning before work"
    assert (await chat(http, token, long_message, "walks")).status_code == 200
    assert (await chat(http, token, "And in the evening too", "walks")).status_code == 200
    listed = await conversations(http, token)
    assert [c["session_id"] for c in listed] == ["walks", trip["session_id"], "mine.1"]
    walks = listed[0]
    assert walks["turns"] == 2
    assert walks["title"].endswith("…") and len(walks["title"]) <= 60
    assert long_message.startswith(walks["title"].removesuffix("…"))
    assert listed[1]["title"] == "Trip plans"  # a titled conversation keeps its title

    chosen = await http.post(
        "/api/v1/conversations", json={"session_id": "walks"}, headers=bearer(token)
    )
    assert chosen.status_code == 409  # a client-chosen id must be new
    turns = await http.get("/api/v1/conversations/walks/turns", headers=bearer(token))
    assert [t["query"] for t in turns.json()["items"]] == [long_message, "And in the evening too"]

    renamed = await http.patch(
        "/api/v1/conversations/walks", json={"title": "Rex"}, headers=bearer(token)
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "Rex"
    blank = await http.patch(
        "/api/v1/conversations/walks", json={"title": "   "}, headers=bearer(token)
    )
    assert blank.status_code == 422 and "title" in blank.json()["detail"]

    memories_before = (await http.get("/api/v1/memories", headers=bearer(token))).json()["items"]
    deleted = await http.delete("/api/v1/conversations/walks", headers=bearer(token))
    assert deleted.json() == {"session_id": "walks", "deleted_turns": 2}
    assert [c["session_id"] for c in await conversations(http, token)] == [
        trip["session_id"],
        "mine.1",
    ]
    history = (await http.get("/api/v1/conversation/history", headers=bearer(token))).json()
    assert [item["query"] for item in history] == ["Book a train to Lyon"]
    gone = await http.get("/api/v1/conversations/walks/turns", headers=bearer(token))
    assert gone.status_code == 404
    assert (
        await http.delete("/api/v1/conversations/walks", headers=bearer(token))
    ).status_code == 404
    # Memories learnt in a deleted conversation stay until deleted themselves.
    memories_after = (await http.get("/api/v1/memories", headers=bearer(token))).json()["items"]
    assert memories_after == memories_before


async def test_another_users_conversation_is_not_found(http: httpx.AsyncClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    assert (await chat(http, alice, "Saffron is my secret", "kitchen")).status_code == 200
    assert await conversations(http, bob) == []
    for method, path, body in [
        ("GET", "/api/v1/conversations/kitchen/turns", None),
        ("PATCH", "/api/v1/conversations/kitchen", {"title": "mine now"}),
        ("DELETE", "/api/v1/conversations/kitchen", None),
    ]:
        answer = await http.request(method, path, json=body, headers=bearer(bob))
        assert answer.status_code == 404, (method, answer.text)
    (kitchen,) = await conversations(http, alice)
    assert kitchen["title"] == "Saffron is my secret" and kitchen["turns"] == 1
    # Bob chatting in a session of the same name gets a conversation of his own.
    assert (await chat(http, bob, "Hello", "kitchen")).status_code == 200
    assert [c["turns"] for c in await conversations(http, alice)] == [1]


async def test_one_message_limit_everywhere(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(max_message_chars=50)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        assert (await http.get("/api/v1/limits")).json() == {"max_message_chars": 50}
        token = await register(http, "alice")
        refused = await chat(http, token, "x" * 51)
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "the message has 51 characters; the limit is 50",
            "code": "message_too_long",
        }
        assert (await chat(http, token, "x" * 50)).status_code == 200
        async with connect(server, await ticket(http, token)) as socket:
            await opened(socket)
            frame = {"id": "long", "type": "chat.send", "data": {"message": "y" * 51}}
            await socket.send(json.dumps(frame))
            ack = await receive(socket)
        assert ack["data"] == {
            "ref": "long",
            "ok": False,
            "error": {
                "code": "message_too_long",
                "message": "the message has 51 characters; the limit is 50",
            },
        }


async def test_the_default_limit_is_the_settings(http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    assert (await http.get("/api/v1/limits")).json() == {"max_message_chars": 4000}
    # 1,000 characters was the native API's own, lower limit.
    assert (await chat(http, token, "a" * 1500)).status_code == 200
    refused = await chat(http, token, "a" * 4001)
    assert refused.status_code == 422
    assert "the limit is 4000" in refused.json()["detail"]


class SlowBackend:
    """Streams a word every 50 ms for ever, and records when its stream is closed."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.closed: list[int] = []

    async def generate(self, request: GenerationRequest) -> str:
        raise NotImplementedError

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        sent = 0
        try:
            while True:
                await asyncio.sleep(0.05)
                sent += 1
                yield f"word{sent} "
        finally:
            self.closed.append(sent)


async def test_chat_stop_cancels_the_turn_and_stores_nothing(
    make_server: Callable[..., LiveServer],
) -> None:
    backend = SlowBackend()
    server = make_server(backend, llm={"timeout_s": 60})
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        token = await register(http, "alice")
        async with connect(server, await ticket(http, token)) as socket:
            await opened(socket)
            frame = {"id": "t1", "type": "chat.send", "data": {"message": "Tell me everything"}}
            await socket.send(json.dumps(frame))
            await receive_until(socket, "chat.delta")
            await receive_until(socket, "chat.delta")
            wrong = {"id": "s0", "type": "chat.stop", "data": {"ref": "other"}}
            await socket.send(json.dumps(wrong))
            refused = await receive_until(socket, "ack")
            assert refused[-1]["data"]["error"]["code"] == "not_running"
            await socket.send(json.dumps({"id": "s1", "type": "chat.stop", "data": {"ref": "t1"}}))
            events = await receive_until(socket, "chat.stopped")
            assert {"ref": "s1", "ok": True} in [e["data"] for e in events if e["type"] == "ack"]
            assert events[-1]["data"] == {"ref": "t1"}
            assert "chat.reply" not in [e["type"] for e in events]
            assert len(backend.closed) == 1  # the backend's stream was closed, not abandoned
        assert (await http.get("/api/v1/conversation/history", headers=bearer(token))).json() == []
        assert await conversations(http, token) == []


async def test_a_reply_lists_the_memories_it_had(http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    assert (await chat(http, token, "My dog is called Rex and he loves parks.")).status_code == 200
    # Another conversation: in the same one, the turn itself is in the prompt instead.
    answer = await chat(http, token, "Which parks does my dog Rex love?", "later")
    body = answer.json()
    assert body["truncated"] is False
    assert any("Rex" in memory["text"] for memory in body["memories"]), body["memories"]
    assert all(set(memory) == {"id", "text", "score"} for memory in body["memories"])


async def test_the_library_api_on_sqlite_and_postgresql(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("lib", "Plan a picnic by the lake", session_id="picnic")
    await assistant.chat("lib", "Bring lemonade", session_id="picnic")
    created = await assistant.create_conversation("lib", "  Work   notes ")
    assert created.title == "Work notes" and created.turns == 0
    await assistant.chat("lib", "First line of work", session_id=created.session_id)
    listed = await assistant.list_conversations("lib")
    assert [(c.session_id, c.title, c.turns) for c in listed] == [
        (created.session_id, "Work notes", 1),
        ("picnic", "Plan a picnic by the lake", 2),
    ]
    renamed = await assistant.rename_conversation("lib", "picnic", "Picnic")
    assert renamed.title == "Picnic" and renamed.turns == 2
    turns = await assistant.conversation_turns("lib", "picnic")
    assert [turn.message for turn in turns] == ["Plan a picnic by the lake", "Bring lemonade"]
    assert await assistant.delete_conversation("lib", "picnic") == 2
    assert [c.session_id for c in await assistant.list_conversations("lib")] == [created.session_id]
    with pytest.raises(ConversationNotFoundError):
        await assistant.delete_conversation("lib", "picnic")
    with pytest.raises(ConversationNotFoundError):
        await assistant.rename_conversation("other", created.session_id, "mine")
    with pytest.raises(InvalidInputError, match="title"):
        await assistant.rename_conversation("lib", created.session_id, "\x01")


async def test_a_chat_answer_carries_usage_speed_and_adapter(http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    answer = await chat(http, token, "hello there")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["counted"] is False  # the stand-in backend has no tokenizer: estimated
    assert body["generation"]["time_to_first_token_ms"] >= 0
    assert body["adapter"] is None
