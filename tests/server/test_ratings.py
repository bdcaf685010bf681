"""Rating replies over the API: ``PUT /api/v1/turns/{turn_id}/rating`` and the websocket's
``chat.rate`` frame; the history shows the ratings and the adapter that answered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import LiveServer, bearer, register
from tests.server.test_websocket import connect, opened, receive, receive_until, ticket
from tests.test_ratings import AdapterBackend


async def chat(http: httpx.AsyncClient, headers: dict[str, str], message: str) -> str:
    said = await http.post(
        "/api/v1/conversation/chat", json={"message": message, "session_id": "s1"}, headers=headers
    )
    assert said.status_code == 200, said.text
    turn_id: str = said.json()["turn_id"]
    return turn_id


def stored_rating(server: LiveServer, user: str, turn_id: str) -> int | None:
    """The rating the store holds, read on the server's own event loop."""

    async def read() -> int | None:
        account = await server.state.accounts.get(user)
        assert account is not None
        turns = await server.state.assistant.store.all_turns(account.user_id)
        return next(turn.rating for turn in turns if turn.turn_id == turn_id)

    rating: int | None = server.call(read())
    return rating


async def test_a_reply_is_rated_up_down_and_back_to_none(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    alice = bearer(await register(http, "alice"))
    turn_id = await chat(http, alice, "Rate this one")
    path = f"/api/v1/turns/{turn_id}/rating"
    turns = (await http.get("/api/v1/conversations/s1/turns", headers=alice)).json()["items"]
    assert [(t["turn_id"], t["rating"], t["adapter"]) for t in turns] == [(turn_id, None, None)]

    for sent, shown, stored in [
        ("up", "up", 1),
        ("down", "down", -1),
        (1, "up", 1),
        (-1, "down", -1),
        (None, None, None),
    ]:
        answer = await http.put(path, json={"rating": sent}, headers=alice)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"turn_id": turn_id, "session_id": "s1", "rating": shown}
        assert stored_rating(live_server, "alice", turn_id) == stored
    await http.put(path, json={"rating": "up"}, headers=alice)
    turns = (await http.get("/api/v1/conversations/s1/turns", headers=alice)).json()["items"]
    assert [t["rating"] for t in turns] == ["up"]
    history = (await http.get("/api/v1/conversation/history", headers=alice)).json()
    assert [(h["turn_id"], h["rating"]) for h in history] == [(turn_id, "up")]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"rating": "sideways"},
        {"rating": 0},
        {"rating": 2},
        {"rating": True},
        {"rating": 1.0},
        {"rating": "UP"},
        {"rating": "up", "extra": 1},
        [1],
    ],
)
async def test_a_bad_rating_is_a_422_and_changes_nothing(
    live_server: LiveServer, http: httpx.AsyncClient, body: Any
) -> None:
    alice = bearer(await register(http, "alice"))
    turn_id = await chat(http, alice, "Rate this one")
    await http.put(f"/api/v1/turns/{turn_id}/rating", json={"rating": "down"}, headers=alice)
    answer = await http.put(f"/api/v1/turns/{turn_id}/rating", json=body, headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_input"
    assert stored_rating(live_server, "alice", turn_id) == -1


async def test_an_unknown_turn_is_a_404(http: httpx.AsyncClient) -> None:
    alice = bearer(await register(http, "alice"))
    for turn_id in ["0" * 32, "x" * 64]:
        answer = await http.put(
            f"/api/v1/turns/{turn_id}/rating", json={"rating": "up"}, headers=alice
        )
        assert answer.status_code == 404
        assert answer.json() == {
            "detail": f"no turn {turn_id!r} for this user",
            "code": "not_found",
        }
    too_long = await http.put(f"/api/v1/turns/{'x' * 65}/rating", json={"rating": 1}, headers=alice)
    assert too_long.status_code == 422
    unauthenticated = await http.put(f"/api/v1/turns/{'0' * 32}/rating", json={"rating": 1})
    assert unauthenticated.status_code == 401


async def test_the_websocket_rates_and_every_tab_hears_it(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    turn_id = await chat(http, bearer(token), "Rate me over the socket")
    async with (
        connect(live_server, await ticket(http, token)) as socket,
        connect(live_server, await ticket(http, token)) as other_tab,
    ):
        snapshot = await opened(socket)
        await opened(other_tab)
        [item] = snapshot["data"]["items"]
        assert (item["turn_id"], item["rating"]) == (turn_id, None)

        frame = {"id": "r1", "type": "chat.rate", "data": {"turn_id": turn_id, "rating": "up"}}
        await socket.send(json.dumps(frame))
        ack, rated = await receive_until(socket, "turn.rated")
        assert ack["type"] == "ack" and ack["data"] == {"ref": "r1", "ok": True}
        expected = {"turn_id": turn_id, "session_id": "s1", "rating": "up", "ref": "r1"}
        assert rated["data"] == expected
        assert (await receive(other_tab))["data"] == expected
        assert stored_rating(live_server, "alice", turn_id) == 1

        # Rated over HTTP: the sockets hear it too, with no ref.
        await http.put(
            f"/api/v1/turns/{turn_id}/rating", json={"rating": None}, headers=bearer(token)
        )
        pushed = await receive(socket)
        assert pushed["type"] == "turn.rated"
        assert pushed["data"] == {**expected, "rating": None, "ref": None}

    async with connect(live_server, await ticket(http, token)) as socket:
        await socket.send(
            json.dumps(
                {"id": "r2", "type": "chat.rate", "data": {"turn_id": turn_id, "rating": -1}}
            )
        )
        await opened(socket)
        ack, rated = await receive_until(socket, "turn.rated")
        assert ack["data"]["ok"] is True and rated["data"]["rating"] == "down"
    async with connect(live_server, await ticket(http, token)) as socket:
        [item] = (await opened(socket))["data"]["items"]
        assert item["rating"] == "down"


async def test_bad_and_foreign_ratings_over_the_websocket_are_refused(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    alices = await chat(http, bearer(alice), "Alice's turn")
    async with connect(live_server, await ticket(http, bob)) as socket:
        await opened(socket)
        cases: list[tuple[Any, str]] = [
            ({"turn_id": alices, "rating": "up"}, "not_found"),
            ({"turn_id": "0" * 32, "rating": "up"}, "not_found"),
            ({"turn_id": alices, "rating": "meh"}, "invalid_input"),
            ({"turn_id": alices, "rating": True}, "invalid_input"),
            ({"turn_id": alices}, "invalid_input"),
            ({"rating": "up"}, "invalid_input"),
            ({"turn_id": "../x", "rating": "up"}, "invalid_input"),
            ("up", "invalid_input"),
            (None, "invalid_input"),
        ]
        for number, (data, code) in enumerate(cases):
            await socket.send(json.dumps({"id": number, "type": "chat.rate", "data": data}))
            ack = await receive(socket)
            assert ack["type"] == "ack", data
            assert ack["data"]["ref"] == number
            assert ack["data"]["ok"] is False
            assert ack["data"]["error"]["code"] == code, data
        not_found = "no turn {!r} for this user"
        await socket.send(
            json.dumps({"id": "x", "type": "chat.rate", "data": {"turn_id": alices, "rating": 1}})
        )
        assert (await receive(socket))["data"]["error"]["message"] == not_found.format(alices)
    assert stored_rating(live_server, "alice", alices) is None


async def test_the_history_and_the_turns_name_the_adapter_that_answered(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = make_server(AdapterBackend())
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        alice = bearer(await register(http, "alice"))
        account = server.call(server.state.accounts.get("alice"))
        registry = server.state.assistant.services.adapter_registry()
        source = tmp_path / "files"
        source.mkdir()
        (source / "adapter_config.json").write_text("{}")
        (source / "adapter_model.safetensors").write_bytes(b"weights")
        registry.register(source, name="alice-style", version="1", base_model="base")
        registry.activate("alice-style", "1")
        registry.assign(account.user_id, "alice-style")
        said = await http.post("/api/v1/conversation/chat", json={"message": "hi"}, headers=alice)
        assert said.json()["adapter"] == "alice-style@1"
        history = (await http.get("/api/v1/conversation/history", headers=alice)).json()
        turns = (await http.get("/api/v1/conversations/default/turns", headers=alice)).json()
    for items in (history, turns["items"]):
        assert [(i["turn_id"], i["adapter"]) for i in items] == [
            (said.json()["turn_id"], "alice-style@1")
        ]
