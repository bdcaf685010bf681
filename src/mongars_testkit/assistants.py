"""Settings and assistants for tests: exactly the plugins a test names, in its own folder."""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import BaseModel

from mongars_core.llm import LLMBackend
from mongars_core.pipeline import Assistant
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_testkit.backends import DEFAULT_BACKEND, BackendPlugin

PluginChoice: TypeAlias = str | tuple[str, object] | object
"""An installed plugin by its entry-point name, a ``(name, plugin)`` pair, or a plugin
(a module or an object with ``@hookimpl`` methods)."""


def isolated_settings(folder: Path) -> Settings:
    """Settings that keep everything under ``folder``: SQLite in ``folder/data``,
    models in ``folder/cache``, the ``instant`` backend and no embedding model.

    Environment variables still count; the ``mongars_settings`` fixture removes
    the ``MONGARS_*`` ones first.
    """
    return Settings(
        data_dir=folder / "data",
        cache_dir=folder / "cache",
        llm={"backend": DEFAULT_BACKEND, "timeout_s": 10, "first_token_timeout_s": 5},
        memory={"embedder": "none"},
    )


def with_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """A copy of ``settings`` with top-level fields replaced.

    A mapping given for a core section (``llm={"timeout_s": 1}``) updates that
    section and is validated; other values replace the field as they are. A
    plugin's section (``ollama={"hosts": [...]}``) is kept for
    :meth:`~mongars_core.settings.Settings.section`, which validates it.
    """
    update: dict[str, Any] = {}
    for name, value in overrides.items():
        current = getattr(settings, name, None) if name in Settings.model_fields else None
        if isinstance(current, BaseModel) and isinstance(value, Mapping):
            value = type(current).model_validate({**current.model_dump(), **value})
        update[name] = value
    return settings.model_copy(update=update)


def plugin_name(plugin: object) -> str:
    """The name a plugin given without one is registered under."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    if isinstance(plugin, BackendPlugin):
        return plugin.name
    return type(plugin).__name__


class AssistantFactory:
    """``await make_assistant(*plugins, backend=..., **settings)``: an open
    :class:`~mongars_core.pipeline.Assistant` with exactly those plugins.

    ``plugins`` are :data:`PluginChoice` values; installed plugins are loaded
    only when some are named. ``backend`` (default: the factory's, the
    ``instant_backend`` fixture) is registered as ``instant``, the backend the
    settings choose, unless a plugin is itself named ``instant``. ``settings``
    override the base settings (:func:`with_overrides`). :meth:`aclose` closes
    every assistant made.
    """

    def __init__(self, settings: Settings, backend: LLMBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.made: list[Assistant] = []

    async def __call__(
        self, *plugins: PluginChoice, backend: LLMBackend | None = None, **settings: Any
    ) -> Assistant:
        if "load_plugins" in settings:
            raise TypeError("name installed plugins as arguments, not with load_plugins")
        installed = [plugin for plugin in plugins if isinstance(plugin, str)]
        given = [
            plugin if isinstance(plugin, tuple) else (plugin_name(plugin), plugin)
            for plugin in plugins
            if not isinstance(plugin, str)
        ]
        if all(name != DEFAULT_BACKEND for name, _ in given):
            given.insert(0, (DEFAULT_BACKEND, BackendPlugin(backend or self.backend)))
        elif backend is not None:
            raise TypeError(f"backend= and a plugin named {DEFAULT_BACKEND!r} were both given")
        chosen = with_overrides(self.settings, settings)
        if installed:
            chosen.load_plugins = [*installed, *(name for name, _ in given)]
        pm = build_plugin_manager(chosen, load_entrypoints=bool(installed), plugins=given)
        missing = [name for name in installed if not pm.has_plugin(name)]
        if missing:
            raise LookupError(f"no installed plugin loaded under the names {missing}")
        assistant = await Assistant.from_settings(chosen, plugin_manager=pm)
        self.made.append(assistant)
        return assistant

    async def aclose(self) -> None:
        """Close the assistants made, the last one first."""
        while self.made:
            await self.made.pop().aclose()
