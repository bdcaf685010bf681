"""The web console: plain HTML, CSS and JavaScript from ``mongars_server/static``."""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from mongars_server.errors import ApiError

router = APIRouter(tags=["console"], include_in_schema=False)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    resource = files("mongars_server") / "static" / name
    if suffix not in _TYPES or "/" in name or name.startswith(".") or not resource.is_file():
        raise ApiError(404, f"no console file {name!r}", "not_found")
    return Response(resource.read_bytes(), media_type=_TYPES[suffix], headers=SECURITY_HEADERS)


@router.get("/")
async def console() -> Response:
    return _asset("index.html")


@router.get("/static/{name}")
async def asset(name: Annotated[str, Path(max_length=100)]) -> Response:
    return _asset(name)
