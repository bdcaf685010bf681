"""The web console (plain HTML, CSS and JavaScript from ``mongars_server/static``)
and ``/docs``, the API reference page.

Nothing here loads from another host: the policy allows the page's own origin
only (``connect-src 'self'`` covers its same-origin websocket).
"""

from __future__ import annotations

import html
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path, Request
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
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
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


@router.get("/docs")
async def api_reference(request: Request) -> Response:
    """Every route of the API, from the OpenAPI schema, as one plain page.

    Swagger UI would load its scripts from a CDN; this page loads nothing. The
    schema itself is ``/openapi.json``, for any OpenAPI viewer or client generator.
    """
    schema = request.app.openapi()
    rows = []
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            summary = operation.get("summary", "")
            detail = (operation.get("description") or "").split("\n\n")[0]
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(summary)}<br><small>{html.escape(detail)}</small></td></tr>"
            )
    title = html.escape(f"{schema['info']['title']} {schema['info']['version']} API")
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        # Its own file: the policy (default-src 'self') forbids an inline <style>.
        '<link rel=stylesheet href="/static/docs.css">'
        f"</head><body><h1>{title}</h1><p>The OpenAPI schema: "
        '<a href="/openapi.json"><code>/openapi.json</code></a> (load it into any OpenAPI '
        "viewer or client generator). docs/http_api.md in the source describes every route "
        "and the websocket events.</p><table>" + "".join(rows) + "</table></body></html>"
    )
    return Response(page, media_type=_TYPES[".html"], headers=SECURITY_HEADERS)
