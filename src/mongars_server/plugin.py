"""The bundled server plugin: declares the ``server`` settings section and
registers the built-in routers and the ``serve``, ``users`` and ``keys`` commands.

Importing it needs no FastAPI; the routers are imported when the server
assembles, so ``mongars serve`` without the ``server`` extra says what to
install instead of failing at start-up.
"""

from __future__ import annotations

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.settings import Settings
from mongars_server.settings import SERVER


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(SERVER)


@hookimpl
def mongars_register_routers(register: Register, settings: Settings) -> None:
    from mongars_server.routes import (
        auth,
        console,
        conversation,
        conversations,
        erasure,
        health,
        history_io,
        local,
        memories,
        models,
        openai_api,
        websocket,
    )

    register("auth", auth.router)
    register("conversation", conversation.router)
    register("conversations", conversations.router)
    register("memories", memories.router)
    register("websocket", websocket.router)
    register("openai", openai_api.router)
    register("health", health.router)
    register("models", models.router)
    register("console", console.router)
    register("local", local.router)
    register("history_io", history_io.router)
    register("erasure", erasure.router)


@hookimpl
def mongars_register_commands(register: Register, settings: Settings) -> None:
    from mongars_server.cli import keys_app, serve_app, users_app

    register("serve", serve_app)
    register("users", users_app)
    register("keys", keys_app)
