"""The shared objects of a running assistant, handed to plugins, and their typed stash.

:class:`Services` is what lifecycle hooks receive and what ``turn.services``
points to. Plugins keep per-assistant state under a :class:`StashKey` on
``services.stash`` (the way pytest's ``Stash`` works) instead of module-level
globals, and get it back with its type::

    PROFILES = StashKey[dict[str, StyleProfile]]("personality.profiles")

    services.stash[PROFILES] = {}
    profiles = services.stash[PROFILES]        # typed: dict[str, StyleProfile]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from opentelemetry import metrics, trace

from mongars_core.user_writes import UserWrites

if TYPE_CHECKING:
    from mongars_core.adapters import AdapterRegistry
    from mongars_core.llm import Embedder
    from mongars_core.plugins import PluginHost
    from mongars_core.router import LLMRouter
    from mongars_core.settings import Settings
    from mongars_core.storage.store import Store

T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """A typed key of :class:`Stash`. Two keys are the same key only if they are the
    same object; ``name`` only serves error messages and ``repr``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


class Stash:
    """Per-assistant plugin state under typed keys (see :class:`StashKey`)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[StashKey[Any], object] = {}

    # Not iterable: a key is reached only by whoever holds it.
    __iter__ = None

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._items[_checked(key)] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        try:
            return cast(T, self._items[_checked(key)])
        except KeyError:
            raise KeyError(f"nothing stashed under {key.name!r}") from None

    def get(self, key: StashKey[T], default: D) -> T | D:
        return cast(T, self._items[key]) if _checked(key) in self._items else default

    def setdefault(self, key: StashKey[T], default: T) -> T:
        if _checked(key) in self._items:
            return cast(T, self._items[key])
        self._items[key] = default
        return default

    def setdefault_factory(self, key: StashKey[T], factory: Callable[[], T]) -> T:
        """The value under ``key``, made by ``factory`` and stashed when missing."""
        if _checked(key) not in self._items:
            self._items[key] = factory()
        return cast(T, self._items[key])

    def pop(self, key: StashKey[T], default: D) -> T | D:
        return cast(T, self._items.pop(key)) if _checked(key) in self._items else default

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._items[_checked(key)]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def _checked(key: StashKey[T]) -> StashKey[T]:
    if not isinstance(key, StashKey):
        raise TypeError(
            f"stash keys are StashKey objects, not {type(key).__name__} ({key!r}): "
            'define one, e.g. KEY = StashKey[MyState]("my_plugin.state")'
        )
    return key


def _default_meter() -> metrics.Meter:
    # OpenTelemetry's global meter: a no-op unless the host application set one up.
    return metrics.get_meter("mongars_core")


def _default_tracer() -> trace.Tracer:
    # OpenTelemetry's global tracer: a no-op unless the host application set one up.
    return trace.get_tracer("mongars_core")


@dataclass
class Services:
    """The shared objects of a running assistant, handed to plugins.

    Built by :func:`mongars_core.assembly.build_services`; ``tracer`` and
    ``meter`` are the host's (the server's), else OpenTelemetry's global ones.
    """

    settings: Settings
    store: Store
    router: LLMRouter
    plugins: PluginHost
    embedder: Embedder | None = None
    embedder_name: str | None = None
    stash: Stash = field(default_factory=Stash)
    tracer: trace.Tracer = field(default_factory=_default_tracer)
    meter: metrics.Meter = field(default_factory=_default_meter)
    user_writes: UserWrites = field(default_factory=UserWrites)
    """Orders writes of a user's data and their erasure (:mod:`mongars_core.user_writes`)."""
    """The host's OpenTelemetry meter (the server's, which ``/metrics`` reads), for
    plugins' own instruments; else OpenTelemetry's global one."""
    adapters: AdapterRegistry | None = None
    """The adapter registry (``<data dir>/adapters``): each user's active LoRA adapter
    is applied to their turns (``None``: :meth:`adapter_registry` opens it)."""

    def adapter_registry(self) -> AdapterRegistry:
        if self.adapters is None:
            from mongars_core.adapters import AdapterRegistry

            self.adapters = AdapterRegistry(self.settings.data_dir / "adapters")
        return self.adapters
