"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from mongars_core.capabilities import HealthChecked, Loadable, has_ability
from mongars_core.errors import DatabaseUnavailableError, MongarsError
from mongars_core.llm import LLMBackend
from mongars_core.router import EndpointStatus
from mongars_server.app import ServerState
from mongars_server.deps import AdminCaller, State, bearer, current_caller
from mongars_server.errors import ApiError
from mongars_server.settings import SERVER

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

READY_CHECK_TIMEOUT_S = 3.0
SERVICE = "monGARS"
"""What ``/healthz`` names as ``service``: how a second ``mongars serve`` recognises a first."""


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (``service`` tells a second ``mongars serve`` who holds the port)."""
    return {"status": "ok", "service": SERVICE}


@router.get("/ready", responses={503: {"description": "Not ready; the body says why."}})
async def ready(server: State) -> JSONResponse:
    """Ready when the database answers and the default LLM backend is loaded and healthy."""
    checks: dict[str, str] = {"database": await _database_status(server)}
    checks["backend"] = await _backend_status(server)
    ok = all(value == "ok" for value in checks.values())
    headers = {} if ok else {"Retry-After": "5"}
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503, headers=headers)


async def _database_status(server: ServerState) -> str:
    """``ok`` when the database takes a write: a no-op update, rolled back.

    A read-only database (a read-only file or mount, a PostgreSQL standby)
    answers reads, so ``SELECT 1`` alone would call it ready. The answer is
    public, so it never carries the error text (which names the URL); the log does.
    """
    store = server.assistant.store
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            async with store.session(write=True) as session:
                if store.engine.dialect.name == "postgresql":
                    read_only = await session.scalar(text("SHOW transaction_read_only"))
                    if read_only == "on":
                        return "read-only: the database refuses writes"
                await session.execute(text("UPDATE alembic_version SET version_num = version_num"))
                await session.rollback()
    except TimeoutError:
        logger.warning("readiness: the database did not answer in %s s", READY_CHECK_TIMEOUT_S)
        return "unavailable: timed out"
    except DatabaseUnavailableError as exc:
        logger.warning("readiness: %s", exc)
        return "unavailable"
    except MongarsError as exc:
        logger.warning("readiness: %s", exc)
        if "readonly" in str(exc).replace("-", "").replace(" ", "").lower():
            return "read-only: the database refuses writes"
        return "unavailable"
    return "ok"


async def _backend_status(server: ServerState) -> str:
    if server.model_error:
        return f"failed to load: {server.model_error}"
    try:
        name, backend = server.assistant.router.get()
    except MongarsError as exc:
        return str(exc)
    try:
        return await _ability_status(name, backend)
    except Exception as exc:
        # The backend's own code (a property, a health check) is broken: not ready,
        # and the public answer names the error's type only; the log has the rest.
        logger.exception("readiness: the checks of LLM backend %s failed", name)
        return f"{name}: its readiness check failed ({type(exc).__name__})"


async def _ability_status(name: str, backend: LLMBackend) -> str:
    """``ok``, or why the backend cannot serve yet, from its optional abilities."""
    if has_ability(backend, Loadable) and not cast(Loadable, backend).loaded:
        return f"{name}: loading"
    if has_ability(backend, HealthChecked):
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                healthy = await cast(HealthChecked, backend).health()
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
    access = server.settings.section(SERVER).metrics_access
    if access == "off":
        raise ApiError(404, "metrics are turned off on this server", "not_found")
    if access == "admin":
        caller = await current_caller(server, token)
        if not caller.is_admin:
            raise ApiError(403, "metrics are for administrators", "forbidden")
    return Response(await server.metrics.render(), media_type=CONTENT_TYPE_LATEST)


class LLMHealth(BaseModel):
    endpoints: list[EndpointStatus]


@router.get("/api/v1/llm/health", response_model=LLMHealth)
async def llm_health(server: State, caller: AdminCaller) -> LLMHealth:
    """Every LLM endpoint by role: breaker state, load, failures (administrators only)."""
    return LLMHealth(endpoints=await server.assistant.router.health())
