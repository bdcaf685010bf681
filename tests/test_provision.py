"""Provisioning each role's models onto backends that manage models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from mongars_core.errors import BackendUnavailableError, ModelNotFoundError
from mongars_core.provision import provision
from mongars_core.router import LLMRouter
from mongars_core.settings import EndpointSpec
from mongars_core.types import GenerationRequest


@dataclass
class Listed:
    name: str
    digest: str


class ManagedBackend:
    """Has some models; pulls others from a registry; ``down`` refuses everything."""

    def __init__(self, installed: dict[str, str], registry: dict[str, str], down: bool = False):
        self.model = "default:1b"
        self.installed = dict(installed)
        self.registry = registry
        self.down = down
        self.pulled: list[str] = []
        self.progress: list[tuple[str, int, int | None]] = []

    async def generate(self, request: GenerationRequest) -> str:
        return ""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        yield ""

    async def list_models(self) -> list[Listed]:
        if self.down:
            raise BackendUnavailableError("connection refused")
        return [Listed(name, digest) for name, digest in self.installed.items()]

    async def pull(self, model: str, progress=None) -> str:  # type: ignore[no-untyped-def]
        name = model if ":" in model else f"{model}:latest"
        if name not in self.registry:
            raise ModelNotFoundError(f"pull model manifest: file does not exist ({model})")
        self.pulled.append(model)
        if progress is not None:
            progress(f"pulling {name}", 100, 100)
        self.installed[name] = self.registry[name]
        return "success"


class Unmanaged:
    async def generate(self, request: GenerationRequest) -> str:
        return ""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        yield ""


async def test_each_endpoint_is_reported_and_each_model_pulled_once() -> None:
    ws = ManagedBackend(
        installed={"qwen:7b": "sha-old", "phi:latest": "sha-phi"},
        registry={"qwen:7b": "sha-new", "coder:3b": "sha-coder", "phi:latest": "sha-phi"},
    )
    gone = ManagedBackend({}, {}, down=True)
    router = LLMRouter(
        {"ws": ws, "gone": gone, "local": Unmanaged()},
        "local",
        roles={
            "general": [
                EndpointSpec(backend="ws", model="qwen:7b"),
                EndpointSpec(backend="gone", model="qwen:7b"),
                EndpointSpec(backend="local"),
            ],
            "coding": [EndpointSpec(backend="ws", model="coder:3b")],
            "chat": [
                EndpointSpec(backend="ws", model="coder:3b"),
                EndpointSpec(backend="ws", model="phi"),
            ],
            "missing": [EndpointSpec(backend="ws", model="nonexistent:1b")],
        },
    )
    seen: list[tuple[str, int, int | None]] = []
    results = await provision(router, progress=lambda *args: seen.append(args))
    report = {(r.role, r.backend, r.model): r.status for r in results}
    assert report == {
        ("general", "ws", "qwen:7b"): "exists",
        ("general", "gone", "qwen:7b"): "unavailable",
        ("general", "local", None): "unmanaged",
        ("coding", "ws", "coder:3b"): "installed",
        ("chat", "ws", "coder:3b"): "installed",
        ("chat", "ws", "phi"): "exists",
        ("missing", "ws", "nonexistent:1b"): "unavailable",
    }
    assert ws.pulled.count("coder:3b") == 1, "one pull per model, shared by roles"
    assert ("pulling coder:3b", 100, 100) in seen
    unavailable = {r.model: r.detail for r in results if r.status == "unavailable"}
    assert "does not exist" in unavailable["nonexistent:1b"]

    again = await provision(router, roles=["general"], update=True)
    assert {(r.backend, r.status) for r in again} == {
        ("ws", "updated"),
        ("gone", "unavailable"),
        ("local", "unmanaged"),
    }
