"""Several server processes over one database and one Redis, as with
``mongars serve --workers N``: tickets, rate limits, websocket events and
cached memories stay right whichever process a request lands on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import LiveServer, bearer, register, running, server_settings
from tests.server.test_websocket import connect, opened, receive, rejected, ticket

pytestmark = pytest.mark.redis


@pytest.fixture
def two_workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    # Each test's deployment (its data directory) has Redis keys of its own, so
    # earlier runs' rate-limit buckets do not count against this one.
    settings = server_settings(
        tmp_path, redis_url=redis_url, server={"rate_limit_per_minute": 6, "rate_limit_burst": 14}
    )
    with ExitStack() as stack:
        first = stack.enter_context(running(settings))
        second = stack.enter_context(running(settings))
        yield first, second


async def test_workers_share_tickets_events_and_limits(
    two_workers: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two_workers
    user = f"u{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=a.url) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
        token = await register(on_a, user)
        assert (await on_b.get("/api/v1/user/me", headers=bearer(token))).status_code == 200

        issued = await ticket(on_a, token)
        async with connect(b, issued) as socket:
            await opened(socket)
            await rejected(a, issued)  # used on B, so refused on A as well
            said = await on_a.post(
                "/api/v1/conversation/chat", json={"message": "from a"}, headers=bearer(token)
            )
            assert said.status_code == 200
            pushed = await receive(socket)
            assert pushed["type"] == "chat.reply"
            assert pushed["data"]["turn_id"] == said.json()["turn_id"]

        # One bucket of 14 for both: 3 requests were made above (me, ticket, chat).
        statuses = [
            (await client.get("/api/v1/user/me", headers=bearer(token))).status_code
            for client in [on_a, on_b] * 6
        ]
        assert statuses == [200] * 11 + [429]


async def test_a_memory_deleted_on_one_worker_is_not_recalled_by_another(
    two_workers: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two_workers
    user = f"u{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=a.url) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
        token = bearer(await register(on_a, user))

        async def found_on(client: httpx.AsyncClient, query: str) -> list[str]:
            response = await client.get(
                "/api/v1/memories/search", params={"q": query}, headers=token
            )
            return [item["text"] for item in response.json()["items"]]

        await on_a.post(
            "/api/v1/conversation/chat",
            json={"message": "My favourite colour is teal."},
            headers=token,
        )
        assert any("teal" in text for text in await found_on(on_a, "favourite colour teal"))
        assert any("teal" in text for text in await found_on(on_b, "favourite colour teal"))

        # A memory added through B is recalled by A, whose index was loaded before.
        await on_b.post(
            "/api/v1/conversation/chat",
            json={"message": "My dog is called Biscuit."},
            headers=token,
        )
        await asyncio.sleep(0.2)  # the change notice crosses Redis
        assert any("Biscuit" in text for text in await found_on(on_a, "dog called Biscuit"))

        memories = (await on_b.get("/api/v1/memories", headers=token)).json()["items"]
        teal = next(m for m in memories if "teal" in m["text"])
        assert (
            await on_b.delete(f"/api/v1/memories/{teal['id']}", headers=token)
        ).status_code == 204
        await asyncio.sleep(0.2)
        assert not any("teal" in text for text in await found_on(on_a, "favourite colour teal"))
        history = await on_a.get("/api/v1/conversation/history", headers=token)
        assert [item["query"] for item in history.json()] == [
            "My dog is called Biscuit.",
            "My favourite colour is teal.",
        ]
