"""Every error leaves the server as JSON with the right status.

monGARS API routes answer ``{"detail": message, "code": machine_code}``; the
OpenAI-compatible routes (``/v1/...``) answer OpenAI's
``{"error": {"message", "type", "param", "code"}}``. Validation errors list
``{loc, msg, type}`` only: echoing the client's input back could leak or fail
to encode it. Backend and model errors reach the client with every URL, address
and ``host:port`` taken out (:func:`public_detail`): the log keeps them (with any
password masked by the backend), and administrators see them in
``/api/v1/llm/health``.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mongars_core.errors import (
    BackendError,
    ConfigurationError,
    DatabaseUnavailableError,
    DuplicateRecordError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    MessageTooLongError,
    MissingDependencyError,
    ModelError,
    MongarsError,
    NotFoundError,
    StorageError,
    UserErasedError,
)
from mongars_server.accounts import AccountExistsError

logger = logging.getLogger(__name__)

RETRY_AFTER_UNAVAILABLE_S = 5

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An HTTP error with a machine-readable ``code``."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers)
        self.code = code or _CODES.get(status_code, "error")


def storage_detail(exc: StorageError) -> str:
    """What a client may read about a database failure: no URL, host or driver text."""
    if isinstance(exc, DatabaseUnavailableError):
        return "the database is unavailable"
    return "the database could not complete the request"


_ADDRESS_ASIDE = re.compile(r"\s*\([^()]*[A-Za-z][A-Za-z0-9+.-]*://[^()]*\)")
_ADDRESSES = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"()<>]+"  # a URL
    r"|\[[0-9A-Fa-f:.]+\](?::\d+)?"  # [IPv6]:port
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # IPv4:port
    r"|\b(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+):\d{1,5}\b"  # host.name:port
)


def public_detail(message: str) -> str:
    """A backend's error message as a client may read it: the cause, no address.

    ``the LLM backend 'ollama' (Ollama at http://10.0.0.5:11434) cannot be
    reached`` becomes ``the LLM backend 'ollama' cannot be reached``.
    """
    return _ADDRESSES.sub("[address hidden]", _ADDRESS_ASIDE.sub("", message))


def classify(exc: MongarsError) -> ApiError:
    """The HTTP answer to a monGARS error."""
    if isinstance(exc, AccountExistsError):
        return ApiError(409, str(exc), "username_taken")
    if isinstance(exc, DuplicateRecordError):
        return ApiError(409, str(exc), "conflict")
    if isinstance(exc, UserErasedError):
        return ApiError(409, str(exc), "user_erased")
    if isinstance(exc, IdempotencyKeyReusedError):
        return ApiError(422, str(exc), "idempotency_key_reused")
    if isinstance(exc, MessageTooLongError):
        return ApiError(422, str(exc), "message_too_long")
    if isinstance(exc, InvalidInputError):
        return ApiError(422, str(exc), "invalid_input")
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc), "not_found")
    if isinstance(exc, BackendError | StorageError):
        retry_after = getattr(exc, "retry_after", None) or RETRY_AFTER_UNAVAILABLE_S
        return ApiError(
            503,
            # Storage errors name the database's URL, host and driver, backend errors
            # the backend's address: the log has them (on_mongars_error), no client.
            public_detail(str(exc)) if isinstance(exc, BackendError) else storage_detail(exc),
            "backend_unavailable" if isinstance(exc, BackendError) else "storage_unavailable",
            {"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
    # What the server lacks to serve a turn: the operator's to fix, the caller's to know.
    if isinstance(exc, MissingDependencyError):
        return ApiError(503, f"the server cannot answer: {exc}", "missing_dependency")
    if isinstance(exc, ModelError):
        return ApiError(
            503, f"the server cannot answer: {public_detail(str(exc))}", "model_unavailable"
        )
    if isinstance(exc, ConfigurationError):
        # Its message may name files and settings: the log has it, the caller a pointer.
        return ApiError(
            500, "the server is misconfigured; its log names the setting", "configuration_error"
        )
    return ApiError(500, "internal error", "internal_error")


def error_response(request: Request, error: ApiError) -> JSONResponse:
    body: dict[str, Any]
    if request.url.path.startswith("/v1/"):
        body = {
            "error": {
                "message": error.detail,
                "type": "invalid_request_error" if error.status_code < 500 else "server_error",
                "param": None,
                "code": error.code,
            }
        }
    else:
        body = {"detail": error.detail, "code": error.code}
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error = (
            exc
            if isinstance(exc, ApiError)
            else ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        )
        return error_response(request, error)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "loc": list(item.get("loc", ())),
                # pydantic prefixes a validator's own message with "Value error, ".
                "msg": str(item.get("msg", "")).removeprefix("Value error, "),
                "type": item.get("type", ""),
            }
            for item in exc.errors()
        ]
        content_type = request.headers.get("content-type", "")
        if problems and all(p["loc"] == ["body"] for p in problems) and "json" not in content_type:
            # FastAPI reads a body only with a JSON content type; say so plainly.
            return error_response(
                request,
                ApiError(415, "send the body as JSON (Content-Type: application/json)"),
            )
        if request.url.path.startswith("/v1/"):
            summary = "; ".join(
                f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in problems
            )
            return error_response(request, ApiError(422, summary or "invalid request"))
        return JSONResponse({"detail": problems, "code": "invalid_input"}, status_code=422)

    async def on_mongars_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MongarsError)
        error = classify(exc)
        if error.status_code >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(request, error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(request, ApiError(500, "internal error", "internal_error"))

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(MongarsError, on_mongars_error)
    app.add_exception_handler(Exception, on_unexpected)
