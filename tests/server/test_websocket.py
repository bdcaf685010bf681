"""The chat websocket: tickets, origins, streaming, acks, fan-out, back-pressure."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mongars_server.events import make_event
from mongars_server.security import _b64
from tests.server.conftest import LiveServer, bearer, register


async def ticket(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post("/api/v1/auth/ws/ticket", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert 1 <= body["ttl"] <= 60
    return str(body["ticket"])


def connect(server: LiveServer, ticket: str, origin: str | None = None) -> Any:
    headers = {"Origin": origin} if origin else None
    return websockets.connect(
        f"{server.ws_url}?t={ticket}", additional_headers=headers, open_timeout=5
    )


async def receive(socket: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert set(event) == {"id", "type", "ts", "user", "data"}
    return event


async def receive_until(socket: Any, kind: str) -> list[dict[str, Any]]:
    events = []
    while True:
        event = await receive(socket)
        events.append(event)
        if event["type"] == kind:
            return events


async def opened(socket: Any) -> dict[str, Any]:
    """Read the two greeting events; returns the history snapshot."""
    assert (await receive(socket))["type"] == "ws.connected"
    snapshot = await receive(socket)
    assert snapshot["type"] == "history.snapshot"
    return snapshot


async def rejected(server: LiveServer, ticket: str, origin: str | None = None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server, ticket, origin):
            pass
    assert refused.value.response.status_code == 403


async def test_chat_streams_deltas_then_the_reply(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    await http.post("/api/v1/conversation/chat", json={"message": "earlier"}, headers=bearer(token))
    async with connect(live_server, await ticket(http, token)) as socket:
        snapshot = await opened(socket)
        assert [item["query"] for item in snapshot["data"]["items"]] == ["earlier"]
        assert snapshot["user"] == "alice"

        frame = {"id": "c1", "type": "chat.send", "data": {"message": "stream this please"}}
        await socket.send(json.dumps(frame))
        events = await receive_until(socket, "chat.reply")
    ack, *deltas, reply = events
    assert ack["type"] == "ack" and ack["data"] == {"ref": "c1", "ok": True}
    assert [event["type"] for event in deltas] == ["chat.delta"] * len(deltas)
    assert len(deltas) == 5, "the echo backend streams word by word"
    assert "".join(event["data"]["delta"] for event in deltas) == "You said: stream this please"
    assert reply["data"]["ref"] == "c1"
    assert reply["data"]["response"] == "You said: stream this please"
    assert reply["data"]["speech_turn"]["segments"]
    history = await http.get("/api/v1/conversation/history", headers=bearer(token))
    assert history.json()[0]["query"] == "stream this please"


@pytest.mark.model
async def test_chat_streams_the_real_models_deltas_on_the_default_engine(
    make_server: Callable[..., LiveServer],
) -> None:
    from tests.server.test_local import MODEL_LLM, MODEL_PLUGINS

    server = make_server(load_plugins=MODEL_PLUGINS, llm=MODEL_LLM)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        token = await register(client, "alice")
        async with connect(server, await ticket(client, token)) as socket:
            await opened(socket)
            frame = {"id": "c1", "type": "chat.send", "data": {"message": "Say hi."}}
            await socket.send(json.dumps(frame))
            ack, *deltas, reply = await receive_until(socket, "chat.reply")
    assert ack["data"] == {"ref": "c1", "ok": True}
    assert len(deltas) > 1 and {event["type"] for event in deltas} == {"chat.delta"}
    streamed = "".join(event["data"]["delta"] for event in deltas)
    assert streamed.strip() and reply["data"]["response"].startswith(streamed.strip()[:8])


async def test_a_reply_from_post_chat_reaches_open_sockets(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    async with (
        connect(live_server, await ticket(http, token)) as first,
        connect(live_server, await ticket(http, token)) as second,
    ):
        await opened(first)
        await opened(second)
        response = await http.post(
            "/api/v1/conversation/chat", json={"message": "over http"}, headers=bearer(token)
        )
        assert response.status_code == 200
        for socket in (first, second):
            pushed = await receive(socket)
            assert pushed["type"] == "chat.reply"
            assert pushed["data"]["ref"] is None
            assert pushed["data"]["turn_id"] == response.json()["turn_id"]


async def test_every_frame_is_acknowledged_and_bad_frames_do_no_harm(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        bad_frames: list[tuple[str | bytes, str]] = [
            ("not json", "invalid_json"),
            ("[1, 2]", "invalid_frame"),
            (b"\x00\x01binary", "invalid_frame"),
            (json.dumps({"id": "x" * 101, "type": "ping"}), "invalid_frame"),
            (json.dumps({"id": "u", "type": "launch.missiles"}), "unknown_type"),
            (
                json.dumps({"id": "e", "type": "chat.send", "data": {"message": "   "}}),
                "invalid_input",
            ),
            (json.dumps({"id": "f", "type": "chat.send", "data": "nope"}), "invalid_input"),
            (json.dumps({"id": "g", "type": "chat.send"}), "invalid_input"),
            ("{" * 20_000, "frame_too_large"),
        ]
        for frame, code in bad_frames:
            await socket.send(frame)
            ack = await receive(socket)
            assert ack["type"] == "ack", frame
            assert ack["data"]["ok"] is False
            assert ack["data"]["error"]["code"] == code, frame
        await socket.send(json.dumps({"id": 7, "type": "ping"}))
        assert (await receive(socket))["data"] == {"ref": 7, "ok": True}
        assert (await receive(socket))["type"] == "pong"
        await socket.send(json.dumps({"id": "p", "type": "pong"}))
        assert (await receive(socket))["data"] == {"ref": "p", "ok": True}
    assert (await http.get("/healthz")).status_code == 200


async def test_a_ticket_works_once(live_server: LiveServer, http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    used = await ticket(http, token)
    async with connect(live_server, used) as socket:
        await opened(socket)
    await rejected(live_server, used)


async def test_a_ticket_expires(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"ticket_ttl_s": 1})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        stale = await ticket(client, token)
        await asyncio.sleep(1.05)
        await rejected(server, stale)
        async with connect(server, await ticket(client, token)) as socket:
            await opened(socket)


async def test_tickets_are_bound_to_their_user(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    # Rewriting the user in Alice's ticket breaks its signature.
    body, _, signature = (await ticket(http, alice)).partition(".")
    payload = json.loads(_unb64(body))
    forged = _b64(json.dumps({**payload, "u": "bob"}).encode()) + "." + signature
    await rejected(live_server, forged)
    await rejected(live_server, "garbage")
    await rejected(live_server, "")
    # Alice's socket is Alice's: Bob's replies never reach it.
    async with connect(live_server, await ticket(http, alice)) as socket:
        snapshot = await opened(socket)
        assert snapshot["user"] == "alice"
        await http.post(
            "/api/v1/conversation/chat", json={"message": "bob here"}, headers=bearer(bob)
        )
        await http.post(
            "/api/v1/conversation/chat", json={"message": "alice here"}, headers=bearer(alice)
        )
        pushed = await receive(socket)
        assert pushed["data"]["response"] == "You said: alice here"
        assert pushed["user"] == "alice"


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_origins_are_checked(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"allowed_origins": "https://app.example"})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        await rejected(server, await ticket(client, token), origin="https://evil.example")
        for origin in ["https://app.example", server.url, None]:
            async with connect(server, await ticket(client, token), origin) as socket:
                await opened(socket)


async def test_server_pings_and_the_socket_stays_open(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"ws_heartbeat_s": 0.2})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        async with connect(server, await ticket(client, token)) as socket:
            await opened(socket)
            for _ in range(3):
                assert (await receive(socket))["type"] == "ping"
                await socket.send(json.dumps({"type": "pong"}))
                assert (await receive(socket))["type"] == "ack"


async def test_a_silent_client_is_dropped_after_missed_heartbeats(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"ws_heartbeat_s": 0.1})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        async with connect(server, await ticket(client, token)) as socket:
            await asyncio.sleep(0.6)  # read nothing, answer nothing
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(socket.recv(), 5)
            assert socket.close_code == 1008


async def test_a_slow_consumer_is_disconnected_not_buffered(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"ws_queue_size": 16})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        async with connect(server, await ticket(client, token)) as socket:
            await opened(socket)
            hub = server.state.hub
            # Events are filed under the account's user_id, not its name.
            user_id = server.call(server.state.accounts.get("alice")).user_id

            async def flood() -> int:
                # No await between events: the socket's sender cannot drain meanwhile.
                delivered = 0
                for index in range(1000):
                    delivered += hub._deliver(make_event("flood", user_id, {"n": index}))
                return delivered

            delivered = server.call(flood())
            assert delivered == 16, "the queue is bounded"
            assert hub.dropped_clients == 1
            deadline = time.monotonic() + 5
            with pytest.raises(ConnectionClosed):
                while time.monotonic() < deadline:
                    await asyncio.wait_for(socket.recv(), 5)
            assert socket.close_code == 1013
        assert hub.connections == 0
        assert (await client.get("/healthz")).status_code == 200
