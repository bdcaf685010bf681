"""Building the plugin manager: the hook specs, then each allowed plugin on its own.

``build_plugin_manager(settings)`` loads every plugin of the ``mongars``
entry-point group (the bundled ones register there too), each on its own: a
broken plugin is logged with its distribution and skipped, or re-raised in
strict mode. Implementations without a spec and hook wrappers are refused at
registration. :class:`mongars_core.plugins.PluginHost` is the facade over it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import metadata

import pluggy

from mongars_core import hookspecs
from mongars_core.errors import DuplicateRegistrationError, HookValidationError, PluginLoadError
from mongars_core.settings import Settings

logger = logging.getLogger(
    "mongars_core.plugins"
)  # where plugin-loading problems were always logged

ENTRY_POINT_GROUP = "mongars"


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
    plugins = list(plugins)
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
        callers = pm.get_hookcallers(plugin) or []
        unknown = [caller.name for caller in callers if not caller.has_spec()]
        wrappers = sorted(
            caller.name
            for caller in callers
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper)
        )
        if unknown or wrappers:
            pm.unregister(plugin)
            reasons = []
            if unknown:
                reasons.append(f"implements hooks that have no specification: {', '.join(unknown)}")
            if wrappers:
                reasons.append(
                    "declares hook wrappers, which monGARS does not call (each implementation "
                    "runs on its own): " + ", ".join(wrappers)
                )
            raise pluggy.PluginValidationError(plugin, "; ".join(reasons))
    except pluggy.PluginValidationError as exc:
        message = f"plugin {name!r} ({distribution or 'local'}) is invalid: {exc}"
        if settings.strict_plugins or distribution is None:
            raise HookValidationError(message) from exc
        logger.error("skipping %s", message)
    except ValueError as exc:
        raise PluginLoadError(f"plugin {name!r} cannot be registered: {exc}") from exc
