"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from mongars_core.errors import MongarsError
from mongars_core.router import EndpointStatus
from mongars_server.app import ServerState
from mongars_server.deps import AdminCaller, State, bearer, current_caller
from mongars_server.errors import ApiError

router = APIRouter(tags=["health"])

READY_CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready; the body says why."}})
async def ready(server: State) -> JSONResponse:
    """Ready when the database answers and the default LLM backend is loaded and healthy."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            async with server.assistant.store.session() as session:
                await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except (MongarsError, TimeoutError) as exc:
        checks["database"] = f"unavailable: {exc or 'timed out'}"
    checks["backend"] = await _backend_status(server)
    ok = all(value == "ok" for value in checks.values())
    headers = {} if ok else {"Retry-After": "5"}
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503, headers=headers)


async def _backend_status(server: ServerState) -> str:
    if server.model_error:
        return f"failed to load: {server.model_error}"
    try:
        name, backend = server.assistant.router.get()
    except MongarsError as exc:
        return str(exc)
    if getattr(backend, "loaded", True) is False:
        return f"{name}: loading"
    health = getattr(backend, "health", None)
    if health is not None:
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                healthy = await health()
        except (MongarsError, TimeoutError, OSError) as exc:
            return f"{name}: unreachable ({exc or 'timed out'})"
        if not healthy:
            return f"{name}: unhealthy"
    return "ok"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(server: State, token: Annotated[str | None, Depends(bearer)]) -> Response:
    """Prometheus metrics; who may read them is ``MONGARS_SERVER__METRICS_ACCESS``."""
    access = server.settings.server.metrics_access
    if access == "off":
        raise ApiError(404, "metrics are turned off on this server", "not_found")
    if access == "admin":
        caller = await current_caller(server, token)
        if not caller.is_admin:
            raise ApiError(403, "metrics are for administrators", "forbidden")
    return Response(server.telemetry.render_prometheus(), media_type=CONTENT_TYPE_LATEST)


class LLMHealth(BaseModel):
    endpoints: list[EndpointStatus]


@router.get("/api/v1/llm/health", response_model=LLMHealth)
async def llm_health(server: State, caller: AdminCaller) -> LLMHealth:
    """Every LLM endpoint by role: breaker state, load, failures (administrators only)."""
    return LLMHealth(endpoints=await server.assistant.router.health())
