"""The monGARS HTTP server: ``create_app(settings)`` builds a FastAPI app from
the installed plugins. ``mongars serve`` runs it with uvicorn.

Needs the ``server`` extra: ``pip install 'mongars-assistant[server]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mongars_core.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, **kwargs: Any) -> FastAPI:
    """Build the server; see :func:`mongars_server.app.create_app`."""
    try:
        from mongars_server.app import create_app as build
    except ImportError as exc:
        from mongars_core.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "fastapi", "server") from exc
    return build(settings, **kwargs)
