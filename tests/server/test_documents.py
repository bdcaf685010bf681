"""The document routes and the RAG context route over real HTTP: uploads of each kind,
bad and oversized files, streamed progress, replace, delete, who sees what, shared
collections, retention, and ranked passages with their sources."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mongars_testkit import InstantBackend
from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import LiveServer, bearer, register
from tests.test_knowledge import GUIDE_MD, PAGE_HTML, make_pdf

KNOWLEDGE_PLUGINS = [*BUNDLED_WITHOUT_MODELS, "knowledge", "server", "instant"]
DOCUMENT_FIELDS = {
    "id",
    "title",
    "filename",
    "media_type",
    "collection",
    "shared",
    "size",
    "chunks",
    "sha256",
    "created_at",
    "updated_at",
    "expires_at",
}


def documents_server(make_server: Callable[..., LiveServer], **knowledge: Any) -> LiveServer:
    return make_server(InstantBackend(), load_plugins=KNOWLEDGE_PLUGINS, knowledge=knowledge)


@pytest.fixture
def server(make_server: Callable[..., LiveServer]) -> LiveServer:
    return documents_server(make_server, max_file_bytes=64 * 1024)


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def user(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    return bearer(await register(http, name))


async def admin(http: httpx.AsyncClient, server: LiveServer) -> dict[str, str]:
    token = await register(http, "root")
    server.call(server.state.accounts.set_admin("root", True))
    return bearer(token)


async def upload(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    name: str,
    data: bytes,
    **form: str,
) -> httpx.Response:
    return await http.post(
        "/api/v1/documents", headers=headers, files={"file": (name, data)}, data=form
    )


async def test_uploads_of_each_kind_are_listed_and_searched(http: httpx.AsyncClient) -> None:
    alice = await user(http, "alice")
    created = await upload(http, alice, "guide.md", GUIDE_MD)
    assert created.status_code == 201, created.text
    document = created.json()["document"]
    assert set(document) == DOCUMENT_FIELDS
    assert (document["title"], document["collection"], document["chunks"]) == (
        "Kettle guide",
        "notes",
        3,
    )
    html = await upload(http, alice, "garden.html", PAGE_HTML, collection="garden")
    pdf = await upload(http, alice, "pump.pdf", make_pdf([["The pump runs at 3 bar."]]))
    text = await upload(http, alice, "n.txt", b"Plain words about a bicycle.", title="Bike")
    assert [r.status_code for r in (html, pdf, text)] == [201, 201, 201]
    assert pdf.json()["document"]["media_type"] == "application/pdf"
    assert text.json()["document"]["title"] == "Bike"

    listed = (await http.get("/api/v1/documents", headers=alice)).json()["documents"]
    assert [d["filename"] for d in listed] == ["n.txt", "pump.pdf", "garden.html", "guide.md"]
    garden = await http.get("/api/v1/documents", headers=alice, params={"collection": "garden"})
    assert [d["filename"] for d in garden.json()["documents"]] == ["garden.html"]

    found = await http.get("/api/v1/documents/search", headers=alice, params={"q": "pump bar"})
    passages = found.json()["passages"]
    assert passages[0]["source"] == "pump › page 1" and passages[0]["kind"] == "document"
    one = await http.get(f"/api/v1/documents/{document['id']}", headers=alice)
    assert "white vinegar" in one.json()["text"]
    assert (await http.get("/api/v1/documents", headers={})).status_code == 401


async def test_bad_and_oversized_files_are_refused_and_leave_nothing(
    http: httpx.AsyncClient,
) -> None:
    alice = await user(http, "alice")
    bad = await upload(http, alice, "broken.pdf", b"%PDF-1.4 not really")
    assert bad.status_code == 422 and "not a readable PDF" in bad.json()["detail"]
    binary = await upload(http, alice, "x.txt", b"\x00\xff" * 300)
    assert binary.status_code == 422 and "binary" in binary.json()["detail"]
    odd = await upload(http, alice, "sheet.xlsx", b"PK\x03\x04")
    assert odd.status_code == 422 and "not supported" in odd.json()["detail"]
    big = await upload(http, alice, "big.txt", b"word " * 20_000)  # 100 kB > 64 KiB
    assert big.status_code == 413 and big.json()["code"] == "document_too_large"
    assert (await http.get("/api/v1/documents", headers=alice)).json() == {"documents": []}
    collections = await http.get("/api/v1/documents/collections", headers=alice)
    assert collections.json() == {"collections": []}


async def test_progress_streams_ndjson_then_the_document_or_the_error(
    http: httpx.AsyncClient,
) -> None:
    alice = await user(http, "alice")
    answer = await http.post(
        "/api/v1/documents?progress=1", headers=alice, files={"file": ("guide.md", GUIDE_MD)}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines[0] == {"stage": "parse", "done": 1, "total": 1}
    assert set(lines[-1]) == {"document"} and lines[-1]["document"]["chunks"] == 3
    failed = await http.post(
        "/api/v1/documents?progress=1", headers=alice, files={"file": ("x.pdf", b"%PDF-1 junk")}
    )
    last = json.loads(failed.text.splitlines()[-1])
    assert last["error"]["status"] == 422 and "readable PDF" in last["error"]["detail"]
    assert len((await http.get("/api/v1/documents", headers=alice)).json()["documents"]) == 1


async def test_replace_and_delete(http: httpx.AsyncClient) -> None:
    alice = await user(http, "alice")
    document = (await upload(http, alice, "guide.md", GUIDE_MD)).json()["document"]
    path = f"/api/v1/documents/{document['id']}"
    replaced = await http.put(
        path, headers=alice, files={"file": ("guide.txt", b"The kettle is now made of copper.")}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["document"]["id"] == document["id"]
    assert replaced.json()["document"]["media_type"] == "text/plain"
    search = "/api/v1/documents/search"
    assert (await http.get(search, headers=alice, params={"q": "vinegar"})).json()["passages"] == []
    assert (await http.get(search, headers=alice, params={"q": "copper"})).json()["passages"]
    bad = await http.put(path, headers=alice, files={"file": ("x.pdf", b"%PDF junk")})
    assert bad.status_code == 422
    assert (await http.get(search, headers=alice, params={"q": "copper"})).json()["passages"]
    assert (await http.delete(path, headers=alice)).status_code == 204
    assert (await http.get(search, headers=alice, params={"q": "copper"})).json()["passages"] == []
    assert (await http.delete(path, headers=alice)).status_code == 404


async def test_another_users_documents_stay_out_of_reach(http: httpx.AsyncClient) -> None:
    alice = await user(http, "alice")
    bob = await user(http, "bob")
    document = (await upload(http, alice, "guide.md", GUIDE_MD)).json()["document"]
    path = f"/api/v1/documents/{document['id']}"
    assert (await http.get(path, headers=bob)).status_code == 404
    assert (await http.delete(path, headers=bob)).status_code == 404
    assert (
        await http.put(path, headers=bob, files={"file": ("x.txt", b"bob was here")})
    ).status_code == 404
    assert (await http.get("/api/v1/documents", headers=bob)).json() == {"documents": []}
    found = await http.get("/api/v1/documents/search", headers=bob, params={"q": "Zephyr kettle"})
    assert found.json() == {"passages": []}
    rag = await http.post(
        "/api/v1/review/rag-context", headers=bob, json={"query": "Zephyr kettle vinegar"}
    )
    assert rag.json()["passages"] == []
    # Collections are per user: bob's "notes" is his own, alice's keeps its retention.
    assert (await http.get("/api/v1/documents/collections", headers=bob)).json() == {
        "collections": []
    }
    mine = await http.put(
        "/api/v1/documents/collections/notes", headers=bob, json={"retention_days": 1}
    )
    assert mine.status_code == 200 and mine.json()["documents"] == 0
    [notes] = (await http.get("/api/v1/documents/collections", headers=alice)).json()["collections"]
    assert notes["name"] == "notes" and notes["retention_days"] is None
    assert (await http.get(path, headers=alice)).status_code == 200


async def test_shared_collections_are_published_by_admins(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    alice = await user(http, "alice")
    root = await admin(http, server)
    refused = await upload(http, alice, "guide.md", GUIDE_MD, collection="handbook", shared="true")
    assert refused.status_code == 403
    published = await upload(http, root, "guide.md", GUIDE_MD, collection="handbook", shared="true")
    assert published.status_code == 201
    document = published.json()["document"]
    assert document["shared"] is True
    listed = (await http.get("/api/v1/documents", headers=alice)).json()["documents"]
    assert [d["id"] for d in listed] == [document["id"]]
    found = await http.get("/api/v1/documents/search", headers=alice, params={"q": "descale"})
    assert found.json()["passages"][0]["collection"] == "handbook"
    path = f"/api/v1/documents/{document['id']}"
    assert (await http.delete(path, headers=alice)).status_code == 403
    put = await http.put(path, headers=alice, files={"file": ("x.txt", b"vandalism")})
    assert put.status_code == 403
    retention = "/api/v1/documents/collections/handbook"
    denied = await http.put(retention, headers=alice, json={"retention_days": 3, "shared": True})
    assert denied.status_code == 403
    kept = await http.put(retention, headers=root, json={"retention_days": 3, "shared": True})
    assert kept.status_code == 200 and kept.json()["retention_days"] == 3
    collections = (await http.get("/api/v1/documents/collections", headers=alice)).json()
    assert collections["collections"] == [
        {"name": "handbook", "shared": True, "retention_days": 3, "documents": 1, "writable": False}
    ]
    assert (await http.delete(path, headers=root)).status_code == 204


async def test_retention_route_sets_and_clears_a_collections_retention(
    http: httpx.AsyncClient,
) -> None:
    alice = await user(http, "alice")
    await upload(http, alice, "guide.md", GUIDE_MD)
    path = "/api/v1/documents/collections/notes"
    set_ = await http.put(path, headers=alice, json={"retention_days": 30})
    assert set_.json() == {
        "name": "notes",
        "shared": False,
        "retention_days": 30,
        "documents": 1,
        "writable": True,
    }
    listed = (await http.get("/api/v1/documents", headers=alice)).json()["documents"]
    assert listed[0]["expires_at"] is not None
    assert (await http.put(path, headers=alice, json={"retention_days": 0})).status_code == 422
    cleared = await http.put(path, headers=alice, json={"retention_days": None})
    assert cleared.json()["retention_days"] is None
    listed = (await http.get("/api/v1/documents", headers=alice)).json()["documents"]
    assert listed[0]["expires_at"] is None
    bad_name = await http.put(
        "/api/v1/documents/collections/Bad Name!", headers=alice, json={"retention_days": 2}
    )
    assert bad_name.status_code == 422


async def test_rag_context_ranks_numbered_passages_with_their_sources(
    http: httpx.AsyncClient,
) -> None:
    alice = await user(http, "alice")
    await upload(http, alice, "guide.md", GUIDE_MD)
    await upload(http, alice, "garden.html", PAGE_HTML, collection="garden")
    answer = await http.post(
        "/api/v1/review/rag-context",
        headers=alice,
        json={"query": "how do I descale the kettle with vinegar", "limit": 3, "neighbours": 1},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == "how do I descale the kettle with vinegar"
    passages = body["passages"]
    assert [p["number"] for p in passages] == list(range(1, len(passages) + 1))
    assert passages[0]["source"] == "Kettle guide › Cleaning"
    assert passages[0]["before"] and passages[0]["key"].startswith("chunk:")
    only = await http.post(
        "/api/v1/review/rag-context",
        headers=alice,
        json={"query": "marigolds", "kinds": ["document"], "collections": ["garden"]},
    )
    assert {p["collection"] for p in only.json()["passages"]} == {"garden"}
    for bad in ({"query": ""}, {"query": "x", "limit": 0}, {"query": "x", "kinds": ["web"]}):
        refused = await http.post("/api/v1/review/rag-context", headers=alice, json=bad)
        assert refused.status_code == 422
    assert (
        await http.post("/api/v1/review/rag-context", json={"query": "kettle"})
    ).status_code == 401
