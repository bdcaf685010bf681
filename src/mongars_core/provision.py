"""Model provisioning: make sure every role's models are on their backends.

For each endpoint of each role, a backend that manages models (a
:class:`~mongars_core.capabilities.ModelCatalog`, as the Ollama backend is)
is asked whether it has the endpoint's model, and pulls it when not (or always, with
``update=True``). Each endpoint is reported as ``installed`` (pulled now),
``exists`` (already there, unchanged), ``updated`` (pulled a newer version),
``unavailable`` (the backend or the registry failed; ``detail`` says why) or
``unmanaged`` (the backend fetches its own model, like the local one).
"""

from __future__ import annotations

import asyncio
from typing import Literal, cast

from pydantic import BaseModel

from mongars_core.capabilities import ModelCatalog, Progress, has_ability
from mongars_core.errors import MongarsError
from mongars_core.router import Endpoint, LLMRouter

Status = Literal["installed", "exists", "updated", "unavailable", "unmanaged"]


class ProvisionResult(BaseModel):
    role: str
    endpoint: str
    backend: str
    model: str | None
    status: Status
    detail: str = ""


def _full_name(model: str) -> str:
    """Ollama's naming: a model without a tag is ``:latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def endpoint_model(endpoint: Endpoint) -> str | None:
    """The model an endpoint uses: its own, else its backend's default (where it has one)."""
    if endpoint.model:
        return endpoint.model
    if not has_ability(endpoint.backend, ModelCatalog):
        return None
    return cast(ModelCatalog, endpoint.backend).model


async def provision(
    router: LLMRouter,
    *,
    roles: list[str] | None = None,
    update: bool = False,
    progress: Progress | None = None,
) -> list[ProvisionResult]:
    """Provision the models of ``roles`` (default: every role), one pull per model."""
    endpoints = [e for role in (roles or router.roles) for e in router.endpoints(role)]
    pulls: dict[tuple[str, str], asyncio.Task[tuple[Status, str]]] = {}
    results: list[tuple[Endpoint, str | None, asyncio.Task[tuple[Status, str]] | None]] = []
    for endpoint in endpoints:
        model = endpoint_model(endpoint)
        if not has_ability(endpoint.backend, ModelCatalog):
            results.append((endpoint, model, None))
            continue
        backend = cast(ModelCatalog, endpoint.backend)
        key = (endpoint.backend_name, str(model))
        if key not in pulls:
            pulls[key] = asyncio.ensure_future(
                _provision_one(endpoint.backend_name, backend, model, update, progress)
            )
        results.append((endpoint, model, pulls[key]))
    report = []
    for endpoint, model, task in results:
        if task is None:
            status: Status = "unmanaged"
            detail = "the backend fetches its own model"
        else:
            status, detail = await task
        report.append(
            ProvisionResult(
                role=endpoint.role,
                endpoint=endpoint.name,
                backend=endpoint.backend_name,
                model=model,
                status=status,
                detail=detail,
            )
        )
    return report


async def _provision_one(
    backend_name: str,
    backend: ModelCatalog,
    model: str | None,
    update: bool,
    progress: Progress | None,
) -> tuple[Status, str]:
    if not model:
        return "unavailable", "no model is configured for this endpoint"
    wanted = _full_name(model)
    try:
        before = {_full_name(m.name): m.digest for m in await backend.list_models()}
        if wanted in before and not update:
            return "exists", before[wanted]
        await backend.pull(model, progress)
        after = {_full_name(m.name): m.digest for m in await backend.list_models()}
    except MongarsError as exc:
        return "unavailable", str(exc)
    if wanted not in after:
        return "unavailable", f"{backend_name} did not list {model!r} after the pull"
    if wanted not in before:
        return "installed", after[wanted]
    if before[wanted] != after[wanted]:
        return "updated", after[wanted]
    return "exists", after[wanted]
