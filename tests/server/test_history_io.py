"""The administrators' history routes over real HTTP: import a file into an account,
export it as JSONL; nobody else may."""

from __future__ import annotations

import json

import httpx

from tests.server.conftest import LiveServer, bearer, register
from tests.test_history_io import HEADER, chatgpt_export, jsonl, turn


async def admin_token(http: httpx.AsyncClient, server: LiveServer) -> str:
    token = await register(http, "root")
    server.call(server.state.accounts.set_admin("root", True))
    return token


async def test_an_administrator_imports_and_exports_an_accounts_history(
    http: httpx.AsyncClient, live_server: LiveServer
) -> None:
    root = await admin_token(http, live_server)
    alice = await register(http, "alice")

    imported = await http.post(
        "/api/v1/admin/history/alice/import",
        content=json.dumps(chatgpt_export()),
        headers={**bearer(root), "Content-Type": "application/json"},
    )
    assert imported.status_code == 200, imported.text
    summary = imported.json()
    assert (summary["turns"], summary["sessions"], summary["format"]) == (3, 2, "chatgpt")
    assert "user_id" not in summary and summary["username"] == "alice"

    # The turns are alice's own: she sees the conversations and what was remembered.
    listed = await http.get("/api/v1/conversations", headers=bearer(alice))
    assert {c["title"] for c in listed.json()["items"]} == {"Trip to Lisbon", "Soup"}
    memories = await http.get("/api/v1/memories", headers=bearer(alice))
    assert any("Porto" in m["text"] for m in memories.json()["items"])

    exported = await http.get("/api/v1/admin/history/alice/export", headers=bearer(root))
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[0]["type"] == "mongars-export"
    assert sum(line["type"] == "turn" for line in lines) == 3

    # The export goes back in without duplicates.
    again = await http.post(
        "/api/v1/admin/history/alice/import", content=exported.text, headers=bearer(root)
    )
    assert again.status_code == 200 and again.json()["duplicates"] == 3


async def test_a_malformed_file_is_a_422_naming_the_line_and_stores_nothing(
    http: httpx.AsyncClient, live_server: LiveServer
) -> None:
    root = await admin_token(http, live_server)
    bob = await register(http, "bob")
    body = jsonl(HEADER, turn("I live in Oslo."), turn("I have two dogs.")) + "[1]\n"
    refused = await http.post(
        "/api/v1/admin/history/bob/import", content=body, headers=bearer(root)
    )
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("line 4: expected a JSON object")
    listed = await http.get("/api/v1/conversations", headers=bearer(bob))
    assert listed.json()["items"] == []
    nobody = await http.post(
        "/api/v1/admin/history/ghost/import", content=jsonl(turn("hi")), headers=bearer(root)
    )
    assert nobody.status_code == 404
    empty = await http.get("/api/v1/admin/history/bob/export", headers=bearer(root))
    assert empty.status_code == 404 and "no history yet" in empty.json()["detail"]


async def test_only_administrators_may_use_the_history_routes(http: httpx.AsyncClient) -> None:
    carol = await register(http, "carol")
    imported = await http.post(
        "/api/v1/admin/history/carol/import", content=jsonl(turn("hi")), headers=bearer(carol)
    )
    assert imported.status_code == 403 and imported.json()["code"] == "forbidden"
    exported = await http.get("/api/v1/admin/history/carol/export", headers=bearer(carol))
    assert exported.status_code == 403
    anonymous = await http.get("/api/v1/admin/history/carol/export")
    assert anonymous.status_code == 401


async def test_hostile_files_are_422s_never_500s(
    http: httpx.AsyncClient, live_server: LiveServer
) -> None:
    root = await admin_token(http, live_server)
    await register(http, "dora")
    deep = "[" * 1000 + "]" * 1000
    bodies = {
        jsonl(turn("hi")) + deep + "\n": "line 2: not valid JSON (nested too deeply)",
        deep: "not valid JSON: nested too deeply",
        jsonl({"type": {}}): "line 1: 'type' must be a string",
        '{"created_at": 1' + "0" * 5000 + "}\n": "line 1: not valid JSON (a number has",
        jsonl({"type": "session", "session_id": "s", "title": "\ud800"}, turn("hi")): (
            "line 1: the title is not valid text"
        ),
        jsonl({**turn("hi"), "created_at": 4_102_444_800}): "line 1: 'created_at' is in the future",
    }
    for body, detail in bodies.items():
        refused = await http.post(
            "/api/v1/admin/history/dora/import", content=body, headers=bearer(root)
        )
        assert refused.status_code == 422, (detail, refused.text)
        assert refused.json()["detail"].startswith(detail), refused.json()["detail"]
