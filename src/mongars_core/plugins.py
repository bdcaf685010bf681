"""Building the plugin manager, and the typed facade the rest of monGARS uses.

``build_plugin_manager(settings)`` loads every plugin of the ``mongars``
entry-point group (the bundled ones register there too), each on its own: a
broken plugin is logged with its distribution and skipped, or re-raised in
strict mode. :class:`PluginHost` wraps the manager with one method per hook so
application code never touches ``pm.hook``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from mongars_core import hookspecs
from mongars_core.errors import (
    DuplicateRegistrationError,
    HookValidationError,
    PluginLoadError,
)
from mongars_core.settings import Settings

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mongars"


@dataclass(frozen=True)
class PluginInfo:
    """What ``mongars plugins`` shows about a registered plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)


def build_plugin_manager(
    settings: Settings,
    *,
    load_entrypoints: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
) -> pluggy.PluginManager:
    """A fresh plugin manager with the hook specs and the allowed plugins.

    ``plugins`` are registered first, by name (tests build exactly the
    manager they want this way), and replace entry points of the same name;
    entry points follow unless ``load_entrypoints`` is false. Two installed
    distributions offering the same plugin name are an error naming both.
    Allow/block lists apply to all.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in settings.disable_plugins:
        pm.set_blocked(name)
    for name, plugin in plugins:
        _register(pm, plugin, name, settings, distribution=None)
    explicit = {name for name, _ in plugins}
    providers: dict[str, str | None] = {}
    if load_entrypoints:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist.name if entry_point.dist else None
            if entry_point.name in providers:
                if providers[entry_point.name] == dist:
                    continue  # the same distribution seen twice on sys.path
                raise DuplicateRegistrationError(
                    "plugin",
                    entry_point.name,
                    providers[entry_point.name] or "unknown distribution",
                    dist or "unknown distribution",
                )
            providers[entry_point.name] = dist
            # Plugins passed in explicitly replace entry points of the same name.
            if entry_point.name in explicit or pm.is_blocked(entry_point.name):
                continue
            if not _allowed(entry_point.name, settings):
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:
                if settings.strict_plugins:
                    raise PluginLoadError(
                        f"plugin {entry_point.name!r} from {dist or 'unknown distribution'} "
                        f"failed to load: {exc}"
                    ) from exc
                logger.exception(
                    "skipping plugin %r from distribution %s: it failed to load",
                    entry_point.name,
                    dist,
                )
                continue
            _register(pm, plugin, entry_point.name, settings, distribution=dist)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise HookValidationError(str(exc)) from exc
    return pm


def _allowed(name: str, settings: Settings) -> bool:
    return settings.load_plugins is None or name in settings.load_plugins


def _register(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    settings: Settings,
    *,
    distribution: str | None,
) -> None:
    if pm.is_blocked(name) or not _allowed(name, settings):
        return
    try:
        pm.register(plugin, name=name)
        unknown = [
            caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec()
        ]
        if unknown:
            pm.unregister(plugin)
            raise pluggy.PluginValidationError(
                plugin, f"implements hooks that have no specification: {', '.join(unknown)}"
            )
    except pluggy.PluginValidationError as exc:
        message = f"plugin {name!r} ({distribution or 'local'}) is invalid: {exc}"
        if settings.strict_plugins or distribution is None:
            raise HookValidationError(message) from exc
        logger.error("skipping %s", message)
    except ValueError as exc:
        raise PluginLoadError(f"plugin {name!r} cannot be registered: {exc}") from exc


@dataclass(frozen=True)
class HookFailure:
    """A runtime hook implementation that raised or timed out."""

    hook: str
    plugin: str
    error: BaseException

    def describe(self) -> str:
        return f"{self.hook} in plugin {self.plugin!r} failed: {self.error!r}"


class PluginHost:
    """Typed facade over the plugin manager: one method per hook."""

    def __init__(self, pm: pluggy.PluginManager, settings: Settings) -> None:
        self.pm = pm
        self.settings = settings

    # -- assembly ----------------------------------------------------------------

    def collect(self, hook_name: str, kind: str) -> dict[str, Any]:
        """Run a ``register`` hook; return ``{name: object}``. Duplicates are an error."""
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for impl in self._impls(hook_name):
            plugin_name = impl.plugin_name

            def register(name: str, obj: Any, *, _plugin: str = plugin_name) -> None:
                if name in found:
                    raise DuplicateRegistrationError(kind, name, owners[name], _plugin)
                found[name] = obj
                owners[name] = _plugin

            result = impl.function(**self._kwargs(impl, register=register, settings=self.settings))
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise HookValidationError(
                    f"{hook_name} in plugin {plugin_name!r} returned an awaitable; "
                    "assembly hooks must be plain functions"
                )
        return found

    def llm_backends(self) -> dict[str, Any]:
        return self.collect("mongars_register_llm_backends", "LLM backend")

    def embedders(self) -> dict[str, Any]:
        return self.collect("mongars_register_embedders", "embedder")

    def commands(self) -> dict[str, Any]:
        return self.collect("mongars_register_commands", "command")

    # -- runtime -------------------------------------------------------------------

    async def gather(
        self,
        hook_name: str,
        failures: list[HookFailure],
        *,
        deadline: float | bool | None = True,
        log: bool = True,
        **kwargs: Any,
    ) -> list[Any]:
        """Call every implementation concurrently; return non-``None`` results.

        Coroutine functions are awaited; plain functions run in a worker
        thread (their result is awaited when it is awaitable). A failing or
        slow implementation is logged and recorded in ``failures``; the
        others' results still count. ``deadline`` is the limit in seconds per
        implementation: ``True`` for ``settings.stage_timeout_s``, ``None``
        for none. ``log=False`` leaves logging to a caller that raises the
        failure itself.
        """
        impls = self._impls(hook_name)
        if not impls:
            return []
        outcomes = await asyncio.gather(
            *(self._call(impl, kwargs, deadline) for impl in impls), return_exceptions=True
        )
        results: list[Any] = []
        for impl, outcome in zip(impls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                failure = HookFailure(hook_name, impl.plugin_name, outcome)
                if log:
                    logger.error("%s", failure.describe(), exc_info=outcome)
                failures.append(failure)
            elif outcome is not None:
                results.append(outcome)
        return results

    async def gather_lists(
        self, hook_name: str, failures: list[HookFailure], **kwargs: Any
    ) -> list[Any]:
        """Like :meth:`gather`, for hooks that return lists: the lists concatenated."""
        merged: list[Any] = []
        for result in await self.gather(hook_name, failures, **kwargs):
            merged.extend(result)
        return merged

    async def chain(
        self, hook_name: str, value: Any, key: str, failures: list[HookFailure], **kwargs: Any
    ) -> Any:
        """Call implementations one after another, each given the previous value."""
        for impl in self._impls(hook_name):
            result = await self._call_recorded(impl, hook_name, {**kwargs, key: value}, failures)
            if result is not None:
                value = result
        return value

    async def first(self, hook_name: str, failures: list[HookFailure], **kwargs: Any) -> Any:
        """Call implementations in order until one returns something other than ``None``."""
        for impl in self._impls(hook_name):
            result = await self._call_recorded(impl, hook_name, kwargs, failures)
            if result is not None:
                return result
        return None

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and hooks."""
        dists = {
            entry_point.name: entry_point.dist
            for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP)
        }
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            dist = dists.get(name)
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist.name if dist else None,
                    version=dist.version if dist else None,
                    hooks=hooks,
                )
            )
        return infos

    # -- internals -----------------------------------------------------------------

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook_name)
        # pluggy calls the last-registered (and tryfirst) implementations first.
        return [
            impl
            for impl in reversed(caller.get_hookimpls())
            if not (impl.hookwrapper or impl.wrapper)
        ]

    @staticmethod
    def _kwargs(impl: pluggy.HookImpl, **available: Any) -> dict[str, Any]:
        return {name: available[name] for name in impl.argnames}

    async def _call_recorded(
        self,
        impl: pluggy.HookImpl,
        hook_name: str,
        kwargs: dict[str, Any],
        failures: list[HookFailure],
    ) -> Any:
        """:meth:`_call`, with a failure logged and recorded as ``None``."""
        try:
            return await self._call(impl, kwargs)
        except Exception as exc:
            failure = HookFailure(hook_name, impl.plugin_name, exc)
            logger.error("%s", failure.describe(), exc_info=exc)
            failures.append(failure)
            return None

    async def _call(
        self, impl: pluggy.HookImpl, kwargs: dict[str, Any], deadline: float | bool | None = True
    ) -> Any:
        function: Callable[..., Any] = impl.function
        call_kwargs = self._kwargs(impl, **kwargs)
        timeout = self.settings.stage_timeout_s if deadline is True else deadline or None
        if inspect.iscoroutinefunction(function):
            return await asyncio.wait_for(function(**call_kwargs), timeout)
        result = await asyncio.wait_for(asyncio.to_thread(function, **call_kwargs), timeout)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, timeout)
        return result
