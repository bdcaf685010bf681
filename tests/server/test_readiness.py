"""What /ready and the model profile make of a backend's optional abilities."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx
import pytest

from mongars_testkit import InstantBackend
from tests.server.conftest import LiveServer, bearer, register


class SlowStartingBackend(InstantBackend):
    """``Loadable`` and ``HealthChecked``: loads when the test says so, then is as
    healthy as ``healthy`` says."""

    def __init__(self) -> None:
        super().__init__()
        self.may_load = threading.Event()  # set from the test's thread
        self.healthy = False
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> None:
        await asyncio.to_thread(self.may_load.wait, 20)
        self._loaded = True

    async def health(self) -> bool:
        return self.healthy


async def _backend_check(client: httpx.AsyncClient) -> tuple[int, str]:
    answer = await client.get("/ready")
    return answer.status_code, answer.json()["checks"]["backend"]


async def test_ready_waits_for_the_backend_to_load_and_to_be_healthy(
    make_server: Callable[..., LiveServer],
) -> None:
    backend = SlowStartingBackend()
    server = make_server(backend)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        assert await _backend_check(client) == (503, "instant: loading")
        backend.may_load.set()
        for _ in range(500):
            if backend.loaded:
                break
            await asyncio.sleep(0.01)
        assert await _backend_check(client) == (503, "instant: unhealthy")
        backend.healthy = True
        assert await _backend_check(client) == (200, "ok")


async def test_the_model_profile_says_nothing_of_a_backend_without_a_model_catalog(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(InstantBackend())
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        token = await register(client, "root")
        server.call(server.state.accounts.set_admin("root", True))
        profile = (await client.get("/api/v1/models", headers=bearer(token))).json()
        report = (await client.post("/api/v1/models/provision", headers=bearer(token))).json()
    [endpoint] = profile["roles"]["general"]
    assert endpoint["backend"] == "instant"
    assert (endpoint["model"], endpoint["installed"]) == (None, None)
    [result] = report["results"]
    assert (result["backend"], result["status"]) == ("instant", "unmanaged")


class FailingAbilityBackend(InstantBackend):
    """``Loadable`` and ``HealthChecked``, whose ``loaded`` property or ``health()``
    raises ``error`` once ``broken`` says which (a lost connection, a bug)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.broken: str | None = None
        self.loaded_reads = 0

    @property
    def loaded(self) -> bool:
        self.loaded_reads += 1
        if self.broken == "loaded":
            raise self.error
        return True

    async def load(self) -> None:
        return None

    async def health(self) -> bool:
        if self.broken == "health":
            raise self.error
        return True


@pytest.mark.parametrize("broken", ["loaded", "health"])
@pytest.mark.parametrize(
    "error", [AttributeError("no session"), RuntimeError("bug")], ids=["attribute", "runtime"]
)
async def test_a_backend_whose_ability_raises_is_not_ready_and_says_why(
    make_server: Callable[..., LiveServer], broken: str, error: Exception
) -> None:
    backend = FailingAbilityBackend(error)
    server = make_server(backend)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        assert await _backend_check(client) == (200, "ok")
        reads = backend.loaded_reads
        backend.broken = broken
        status, reason = await _backend_check(client)
    assert status == 503
    assert reason.startswith("instant: ") and type(error).__name__ in reason
    if broken == "health":
        assert backend.loaded_reads == reads + 1, "/ready reads `loaded` once"
