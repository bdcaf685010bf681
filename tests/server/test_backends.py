"""The server when LLM backends fail: 503 with Retry-After, endpoint health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from mongars_core.errors import BackendUnavailableError
from mongars_core.types import GenerationRequest
from tests.server.conftest import LiveServer, bearer, register
from tests.test_provision import ManagedBackend


class DownBackend:
    """Every call is refused, as by a backend whose host is gone."""

    async def generate(self, request: GenerationRequest) -> str:
        raise BackendUnavailableError("connection refused")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        raise BackendUnavailableError("connection refused")
        yield ""  # an async generator


async def test_every_backend_down_is_503_with_retry_after_then_health_shows_it(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(
        DownBackend(), llm={"backend": "instant", "breaker_failures": 2, "breaker_reset_s": 20}
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        token = await register(client, "alice")
        for _ in range(2):
            failed = await client.post(
                "/api/v1/conversation/chat", json={"message": "hello"}, headers=bearer(token)
            )
            assert failed.status_code == 503
            assert failed.json()["code"] == "backend_unavailable"
            assert 1 <= int(failed.headers["Retry-After"]) <= 20
        # The turn failed: nothing of it was stored.
        history = await client.get("/api/v1/conversation/history", headers=bearer(token))
        assert history.json() == []

        assert (await client.get("/api/v1/llm/health", headers=bearer(token))).status_code == 403
        server.call(server.state.accounts.set_admin("alice", True))
        health = await client.get("/api/v1/llm/health", headers=bearer(token))
    assert health.status_code == 200
    [endpoint] = health.json()["endpoints"]
    assert endpoint["backend"] == "instant"
    assert endpoint["state"] == "open"
    assert endpoint["last_error"] == "connection refused"
    assert 0 < endpoint["retry_after_s"] <= 20


async def test_admins_see_the_model_profile_and_provision(
    make_server: Callable[..., LiveServer],
) -> None:
    backend = ManagedBackend(installed={}, registry={"tiny:1b": "sha-tiny"})
    server = make_server(
        backend, llm={"roles": {"general": [{"backend": "instant", "model": "tiny:1b"}]}}
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        token = await register(client, "root")
        assert (await client.get("/api/v1/models", headers=bearer(token))).status_code == 403
        server.call(server.state.accounts.set_admin("root", True))
        before = (await client.get("/api/v1/models", headers=bearer(token))).json()
        assert before["roles"]["general"][0]["installed"] is False
        missing_role = await client.post(
            "/api/v1/models/provision", json={"roles": ["coding"]}, headers=bearer(token)
        )
        assert missing_role.status_code == 404
        report = await client.post("/api/v1/models/provision", headers=bearer(token))
        assert report.status_code == 200
        [result] = report.json()["results"]
        assert (result["model"], result["status"]) == ("tiny:1b", "installed")
        after = (await client.get("/api/v1/models", headers=bearer(token))).json()
        assert after["roles"]["general"][0]["installed"] is True
