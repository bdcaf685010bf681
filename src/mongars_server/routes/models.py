"""Model management for administrators: the model profile and provisioning."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, cast

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.capabilities import ModelCatalog, has_ability
from mongars_core.errors import MongarsError
from mongars_core.provision import ProvisionResult, endpoint_model, provision
from mongars_server.deps import AdminCaller, State
from mongars_server.errors import ApiError

router = APIRouter(prefix="/api/v1/models", tags=["models"])

LIST_TIMEOUT_S = 5.0


class EndpointModel(BaseModel):
    endpoint: str
    backend: str
    model: str | None
    params: dict[str, Any]
    installed: bool | None = Field(
        description="Whether the backend has the model; null when it does not say."
    )


class ModelProfile(BaseModel):
    roles: dict[str, list[EndpointModel]]


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: Annotated[list[Annotated[str, Field(max_length=100)]] | None, Field(max_length=50)] = (
        None
    )
    update: bool = False


class ProvisionReport(BaseModel):
    results: list[ProvisionResult]


@router.get("", response_model=ModelProfile)
async def model_profile(server: State, caller: AdminCaller) -> ModelProfile:
    """Each role's endpoints, and whether their backends have the models."""
    llm = server.assistant.router
    installed: dict[str, set[str] | None] = {}

    async def listing(name: str) -> None:
        backend = llm.get(name)[1]
        if not has_ability(backend, ModelCatalog):
            installed[name] = None
            return
        catalog = cast(ModelCatalog, backend)
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                installed[name] = {m.name for m in await catalog.list_models()}
        except (MongarsError, TimeoutError):
            installed[name] = None

    endpoints = [e for role in llm.roles for e in llm.endpoints(role)]
    await asyncio.gather(*(listing(name) for name in {e.backend_name for e in endpoints}))
    roles: dict[str, list[EndpointModel]] = {}
    for endpoint in endpoints:
        model = endpoint_model(endpoint)
        names = installed.get(endpoint.backend_name)
        roles.setdefault(endpoint.role, []).append(
            EndpointModel(
                endpoint=endpoint.name,
                backend=endpoint.backend_name,
                model=model,
                params=endpoint.params,
                installed=None if names is None or model is None else _has(names, model),
            )
        )
    return ModelProfile(roles=roles)


@router.post("/provision", response_model=ProvisionReport)
async def provision_models(
    server: State, caller: AdminCaller, request: ProvisionRequest | None = None
) -> ProvisionReport:
    """Pull each role's models onto the backends that manage models."""
    request = request or ProvisionRequest()
    llm = server.assistant.router
    unknown = sorted(set(request.roles or []) - set(llm.roles))
    if unknown:
        raise ApiError(404, f"no model role {unknown[0]!r} (roles: {', '.join(llm.roles)})")
    results = await provision(llm, roles=request.roles, update=request.update)
    return ProvisionReport(results=results)


def _has(names: set[str], model: str) -> bool:
    return model in names or f"{model}:latest" in names
