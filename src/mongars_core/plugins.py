"""The typed facade the rest of monGARS calls plugins through.

:class:`PluginHost` wraps a plugin manager (built by
:func:`~mongars_core.plugin_manager.build_plugin_manager`, re-exported here)
with one typed method per hook (as tox 4's ``manager.Plugin`` does), so
application code never spells a hook name or touches ``pm.hook``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from mongars_core.capabilities import has_ability
from mongars_core.errors import (
    DuplicateRegistrationError,
    HookAbortedError,
    HookStuckError,
    HookValidationError,
    MongarsError,
    PluginError,
)
from mongars_core.llm import Embedder, LLMBackend
from mongars_core.plugin_manager import ENTRY_POINT_GROUP, build_plugin_manager
from mongars_core.settings import Section, Settings
from mongars_core.turn_context import HookFailure, TurnContext
from mongars_core.types import (
    Finding,
    KnowledgeGap,
    Memory,
    Passage,
    ReasoningHint,
    Reply,
    RetrievalQuery,
    SpeechPlan,
    Turn,
)

if TYPE_CHECKING:
    import typer

    from mongars_core.services import Services
    from mongars_core.storage.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""What a backend, embedder, router or command may be registered as."""

THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Worker threads for plain (``def``) hook implementations, as asyncio's default."""

T = TypeVar("T")

__all__ = ["ENTRY_POINT_GROUP", "HookFailure", "PluginHost", "PluginInfo", "build_plugin_manager"]


@dataclass(frozen=True)
class PluginInfo:
    """What ``mongars plugins`` shows about a registered plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)


class PluginHost:
    """Typed facade over the plugin manager: one method per hook.

    Assembly methods (:meth:`llm_backends`, ...) run a ``register`` hook and
    return what was registered, by name. Runtime methods call each
    implementation on its own (see docs/plugin_hooks.md), record a failing
    one in the :class:`~mongars_core.turn_context.TurnContext` and go on, and
    check that each result has the hook's type.
    """

    def __init__(self, pm: pluggy.PluginManager, settings: Settings) -> None:
        self.pm = pm
        self.settings = settings
        self._executor: ThreadPoolExecutor | None = None
        # Plain implementations whose call missed its deadline and still runs.
        self._overdue: dict[int, Future[Any]] = {}

    # -- assembly ----------------------------------------------------------------

    def settings_sections(self) -> dict[str, Section[Any]]:
        """Every plugin's settings section (``mongars_register_settings``), by name."""
        return {name: section for name, (_, section) in self._sections().items()}

    def settings_section_owners(self) -> dict[str, str]:
        """The name of the plugin that declared each settings section."""
        return {name: plugin for name, (plugin, _) in self._sections().items()}

    def _sections(self) -> dict[str, tuple[str, Section[Any]]]:
        core = set(Settings.model_fields)
        found: dict[str, Section[Any]] = {}
        owners: dict[str, str] = {}
        for impl in self._impls("mongars_register_settings"):
            plugin_name = impl.plugin_name

            def register(section: Section[Any], *, _plugin: str = plugin_name) -> None:
                if not isinstance(section, Section):
                    raise HookValidationError(
                        f"mongars_register_settings in plugin {_plugin!r} registered "
                        f"{section!r}, not a mongars_core.settings.Section"
                    )
                if section.name in core:
                    raise DuplicateRegistrationError(
                        "settings section", section.name, "mongars_core", _plugin
                    )
                if section.name in found and found[section.name] is not section:
                    raise DuplicateRegistrationError(
                        "settings section", section.name, owners[section.name], _plugin
                    )
                found[section.name] = section
                owners[section.name] = _plugin

            self._assemble(impl, register=register)
        return {name: (owners[name], section) for name, section in found.items()}

    def llm_backends(self) -> dict[str, LLMBackend]:
        """LLM backends by name (``mongars_register_llm_backends``)."""
        return self._collect("mongars_register_llm_backends", "LLM backend", LLMBackend)

    def embedders(self) -> dict[str, Embedder]:
        """Text embedders by name (``mongars_register_embedders``)."""
        return self._collect("mongars_register_embedders", "embedder", Embedder)

    def routers(self) -> dict[str, object]:
        """HTTP routers by name (``mongars_register_routers``); the server checks their type."""
        return self._collect("mongars_register_routers", "router", object)

    def commands(self) -> dict[str, typer.Typer]:
        """CLI sub-commands by name (``mongars_register_commands``)."""
        import typer  # only the command line needs it

        return self._collect("mongars_register_commands", "command", typer.Typer)

    def peer_transports(self) -> dict[str, object]:
        """Peer transports by name (``mongars_register_peer_transports``)."""
        return self._collect("mongars_register_peer_transports", "peer transport", object)

    # -- lifecycle -----------------------------------------------------------------

    async def startup(self, services: Services) -> None:
        """``mongars_startup`` of every plugin, without a deadline; the first failure
        is raised (as a :class:`PluginError` unless it is a monGARS error)."""
        failures: list[HookFailure] = []
        await self._gather("mongars_startup", failures, deadline=None, log=False, services=services)
        if failures:
            failure = failures[0]
            if isinstance(failure.error, MongarsError):
                raise failure.error
            raise PluginError(
                f"plugin {failure.plugin!r} failed to start: {failure.error}"
            ) from failure.error

    async def shutdown(self, services: Services) -> list[HookFailure]:
        """``mongars_shutdown`` of every plugin; failures are logged and returned."""
        failures: list[HookFailure] = []
        await self._gather("mongars_shutdown", failures, deadline=None, services=services)
        return failures

    # -- runtime: one turn ---------------------------------------------------------

    async def recall(self, turn: Turn, context: TurnContext) -> list[Memory]:
        """Every plugin's recalled memories, concatenated (``mongars_recall``)."""
        return await self._lists("mongars_recall", Memory, context, turn=turn)

    async def find_gaps(self, turn: Turn, context: TurnContext) -> list[KnowledgeGap]:
        """Every plugin's knowledge gaps (``mongars_find_gaps``)."""
        return await self._lists("mongars_find_gaps", KnowledgeGap, context, turn=turn)

    async def research(
        self, turn: Turn, gaps: list[KnowledgeGap], context: TurnContext
    ) -> list[Finding]:
        """Every plugin's findings about ``gaps`` (``mongars_research``)."""
        return await self._lists("mongars_research", Finding, context, turn=turn, gaps=gaps)

    async def retrieve(
        self, services: Services, query: RetrievalQuery, context: TurnContext
    ) -> list[list[Passage]]:
        """Each plugin's ranked passages for ``query`` (``mongars_retrieve``): one list
        per plugin that answered, for :func:`mongars_core.retrieval.retrieve` to fuse."""
        hook = "mongars_retrieve"
        ranked: list[list[Passage]] = []
        impls = self._impls(hook)
        results = await self._gather(hook, context.failures, services=services, query=query)
        for impl, result in zip(impls, results, strict=True):
            if result is None:
                continue
            if isinstance(result, list | tuple) and all(isinstance(x, Passage) for x in result):
                ranked.append(list(result))
            else:
                self._wrong_type(hook, impl, result, "list[Passage]", context)
        return ranked

    async def reason(self, turn: Turn, context: TurnContext) -> list[ReasoningHint]:
        """Every plugin's verified facts (``mongars_reason``)."""
        return await self._lists("mongars_reason", ReasoningHint, context, turn=turn)

    async def style_instructions(self, turn: Turn, context: TurnContext) -> list[str]:
        """Every plugin's style instructions, in plugin order (``mongars_style_instructions``)."""
        return await self._lists("mongars_style_instructions", str, context, turn=turn)

    async def adapt_reply(self, turn: Turn, text: str, context: TurnContext) -> str:
        """``text`` through every ``mongars_adapt_reply`` in call order, each given the
        previous one's text; ``None`` or a failure leaves it unchanged."""
        hook = "mongars_adapt_reply"
        for impl in self._impls(hook):
            result = await self._call_recorded(impl, hook, {"turn": turn, "text": text}, context)
            if result is None:
                continue
            if isinstance(result, str):
                text = result
            else:
                self._wrong_type(hook, impl, result, "str", context)
        return text

    def scrub(self, text: str) -> str:
        """``text`` through every ``mongars_scrub`` in call order, each given the previous
        one's text. Fails closed: a scrubber that raises, is ``async`` or returns
        anything but ``str`` or ``None`` is a :class:`PluginError` naming the plugin,
        so unscrubbed text never goes on."""
        hook = "mongars_scrub"
        for impl in self._impls(hook):
            try:
                result = impl.function(**self._kwargs(impl, text=text))
            except Exception as exc:
                # Only the error's type: its message may quote the unscrubbed text.
                raise PluginError(
                    f"{hook} in plugin {impl.plugin_name!r} failed ({type(exc).__name__})"
                ) from None
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # never awaited: don't leave a coroutine warning behind
                raise HookValidationError(
                    f"{hook} in plugin {impl.plugin_name!r} is async; scrubbers must be plain "
                    "functions (they run where no event loop does)"
                )
            if result is None:
                continue
            if not isinstance(result, str):
                raise HookValidationError(
                    f"{hook} in plugin {impl.plugin_name!r} returned {type(result).__name__}, "
                    "not str"
                )
            text = result
        return text

    async def plan_speech(self, turn: Turn, text: str, context: TurnContext) -> SpeechPlan | None:
        """The first :class:`SpeechPlan` a ``mongars_plan_speech`` returns, or ``None``."""
        hook = "mongars_plan_speech"
        for impl in self._impls(hook):
            result = await self._call_recorded(impl, hook, {"turn": turn, "text": text}, context)
            if isinstance(result, SpeechPlan):
                return result
            if result is not None:
                self._wrong_type(hook, impl, result, "SpeechPlan", context)
        return None

    async def remember(
        self, turn: Turn, reply: Reply, writes: UnitOfWork, context: TurnContext
    ) -> None:
        """Every ``mongars_remember``, concurrently; their writes go into ``writes``."""
        await self._gather(
            "mongars_remember", context.failures, turn=turn, reply=reply, writes=writes
        )

    async def turn_completed(
        self, turn: Turn, reply: Reply, writes: UnitOfWork, context: TurnContext
    ) -> None:
        """Every ``mongars_turn_completed``, concurrently; their writes go into ``writes``."""
        await self._gather(
            "mongars_turn_completed", context.failures, turn=turn, reply=reply, writes=writes
        )

    # -- runtime: outside a turn --------------------------------------------------------

    async def forget(self, services: Services, user_id: str, memory_ids: list[int] | None) -> None:
        """Every ``mongars_forget``; the first failure is raised (a plugin that cannot
        forget could still recall a deleted memory)."""
        await self._all_or_raise(
            "mongars_forget", services=services, user_id=user_id, memory_ids=memory_ids
        )

    async def invalidate(self, services: Services, user_id: str) -> None:
        """Every ``mongars_invalidate``; the first failure is raised."""
        await self._all_or_raise("mongars_invalidate", services=services, user_id=user_id)

    async def export_user(self, services: Services, user_id: str) -> list[dict[str, Any]]:
        """Every plugin's export records of ``user_id`` (``mongars_export_user``); the
        first failure is raised (an export that silently lacks data is worse than none)."""
        hook = "mongars_export_user"
        failures: list[HookFailure] = []
        records: list[dict[str, Any]] = []
        impls = self._impls(hook)
        results = await self._gather(hook, failures, log=False, services=services, user_id=user_id)
        if failures:
            raise failures[0].error
        for impl, result in zip(impls, results, strict=True):
            if result is None:
                continue
            if not isinstance(result, list | tuple) or not all(
                isinstance(x, dict) and isinstance(x.get("type"), str) for x in result
            ):
                raise HookValidationError(
                    f"{hook} in plugin {impl.plugin_name!r} returned {type(result).__name__}, "
                    "not a list of records with a 'type'"
                )
            records.extend(result)
        return records

    async def erase_user(self, services: Services, user_id: str) -> None:
        """Every ``mongars_erase_user``; the first failure is raised."""
        await self._all_or_raise("mongars_erase_user", services=services, user_id=user_id)

    async def peer_message(
        self, peer_id: str, payload: dict[str, Any], context: TurnContext
    ) -> dict[str, Any] | None:
        """The first answer a ``mongars_peer_message`` returns, or ``None``."""
        hook = "mongars_peer_message"
        for impl in self._impls(hook):
            result = await self._call_recorded(
                impl, hook, {"peer_id": peer_id, "payload": payload}, context
            )
            if isinstance(result, dict):
                return result
            if result is not None:
                self._wrong_type(hook, impl, result, "dict", context)
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
        # Hook wrappers never get here: registration rejects them.
        return list(reversed(caller.get_hookimpls()))

    @staticmethod
    def _kwargs(impl: pluggy.HookImpl, **available: Any) -> dict[str, Any]:
        return {name: available[name] for name in impl.argnames}

    def _assemble(self, impl: pluggy.HookImpl, **available: Any) -> None:
        """Call one implementation of an assembly hook, which must not be async; what it
        raises comes out as a :class:`PluginError` naming the plugin."""
        hook = impl.function.__name__
        try:
            result = impl.function(**self._kwargs(impl, settings=self.settings, **available))
        except MongarsError:
            raise
        except Exception as exc:
            raise PluginError(f"{hook} in plugin {impl.plugin_name!r} failed: {exc!r}") from exc
        if result is not None and not inspect.isawaitable(result):
            raise HookValidationError(
                f"{hook} in plugin {impl.plugin_name!r} returned {type(result).__name__}; "
                "assembly hooks return nothing and call register(...) instead"
            )
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)  # an un-awaited coroutine warns otherwise
            if close is not None:
                close()
            raise HookValidationError(
                f"{impl.function.__name__} in plugin {impl.plugin_name!r} returned an "
                "awaitable; assembly hooks must be plain functions"
            )

    def _collect(self, hook_name: str, kind: str, expected: Any) -> dict[str, Any]:
        """Run a ``register(name, obj)`` hook; duplicates and objects of the wrong
        type are errors naming the plugin."""
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for impl in self._impls(hook_name):
            plugin_name = impl.plugin_name

            def register(name: str, obj: object, *, _plugin: str = plugin_name) -> None:
                if not isinstance(name, str) or not REGISTERED_NAME.fullmatch(name):
                    raise HookValidationError(
                        f"{hook_name} in plugin {_plugin!r} registered the name {name!r}: "
                        "use letters, digits and _ . : - (at most 64, a letter or digit first)"
                    )
                if name in found:
                    raise DuplicateRegistrationError(kind, name, owners[name], _plugin)
                if not has_ability(obj, expected):
                    raise HookValidationError(
                        f"{hook_name} in plugin {_plugin!r} registered {name!r} as {obj!r}, "
                        f"which is not a {expected.__name__}"
                    )
                found[name] = obj
                owners[name] = _plugin

            self._assemble(impl, register=register)
        return found

    async def _lists(
        self, hook_name: str, item: type[T], context: TurnContext, **kwargs: Any
    ) -> list[T]:
        """Concurrent calls of a hook that returns lists of ``item``: the lists concatenated.
        A result that is not such a list is recorded as that plugin's failure."""
        merged: list[T] = []
        impls = self._impls(hook_name)
        for impl, result in zip(
            impls, await self._gather(hook_name, context.failures, **kwargs), strict=True
        ):
            if result is None:
                continue
            if isinstance(result, list | tuple) and all(isinstance(x, item) for x in result):
                merged.extend(result)
            else:
                self._wrong_type(hook_name, impl, result, f"list[{item.__name__}]", context)
        return merged

    @staticmethod
    def _wrong_type(
        hook_name: str, impl: pluggy.HookImpl, result: object, expected: str, context: TurnContext
    ) -> None:
        error = TypeError(f"returned {type(result).__name__}, expected {expected}")
        failure = HookFailure(hook_name, impl.plugin_name, error)
        logger.error("%s", failure.describe())
        context.failures.append(failure)

    async def _all_or_raise(self, hook_name: str, **kwargs: Any) -> None:
        failures: list[HookFailure] = []
        await self._gather(hook_name, failures, log=False, **kwargs)
        if failures:
            raise failures[0].error

    async def _gather(
        self,
        hook_name: str,
        failures: list[HookFailure],
        *,
        deadline: float | bool | None = True,
        log: bool = True,
        **kwargs: Any,
    ) -> list[Any]:
        """Call every implementation concurrently; one result per implementation, in
        call order (``None`` for one that failed).

        A failing or slow implementation is logged and recorded in ``failures``.
        ``deadline`` is the limit in seconds per implementation: ``True`` for
        ``settings.stage_timeout_s``, ``None`` for none. ``log=False`` leaves
        logging to a caller that raises the failure itself.
        """
        impls = self._impls(hook_name)
        if not impls:
            return []
        outcomes: list[Any]
        if len(impls) == 1:  # no task to run one implementation (most hooks, most turns)
            try:
                outcomes = [await self._call(impls[0], kwargs, deadline)]
            except Exception as exc:
                outcomes = [exc]
        else:
            outcomes = await asyncio.gather(
                *(self._call(impl, kwargs, deadline) for impl in impls), return_exceptions=True
            )
        results: list[Any] = []
        for impl, outcome in zip(impls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # the turn is being cancelled (_call converts the rest)
                failure = HookFailure(hook_name, impl.plugin_name, outcome)
                if log:
                    logger.error("%s", failure.describe(), exc_info=outcome)
                failures.append(failure)
                results.append(None)
            else:
                results.append(outcome)
        return results

    async def _call_recorded(
        self,
        impl: pluggy.HookImpl,
        hook_name: str,
        kwargs: dict[str, Any],
        context: TurnContext,
    ) -> Any:
        """:meth:`_call`, with a failure logged and recorded as ``None``."""
        try:
            return await self._call(impl, kwargs)
        except Exception as exc:
            failure = HookFailure(hook_name, impl.plugin_name, exc)
            logger.error("%s", failure.describe(), exc_info=exc)
            context.failures.append(failure)
            return None

    async def _call(
        self, impl: pluggy.HookImpl, kwargs: dict[str, Any], deadline: float | bool | None = True
    ) -> Any:
        """One implementation: a coroutine function is awaited, a plain function runs in
        one of the host's worker threads (and its result is awaited when awaitable),
        within the deadline.

        What a plugin raises never escapes as a signal: ``KeyboardInterrupt``,
        ``SystemExit``, ``GeneratorExit`` and a ``CancelledError`` the plugin
        raised itself (nobody is cancelling this task) become a
        :class:`HookAbortedError`, that plugin's failure. A plain function still
        running after a deadline it missed is not called again until it returns.
        """
        function: Callable[..., Any] = impl.function
        call_kwargs = self._kwargs(impl, **kwargs)
        timeout = self.settings.stage_timeout_s if deadline is True else deadline or None
        try:
            # asyncio.timeout rather than wait_for: no task of its own per call (a
            # third of a hook call's cost for the quick ones).
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(function):
                    return await function(**call_kwargs)
                result = await self._in_thread(impl, function, call_kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result
        except (KeyboardInterrupt, SystemExit, GeneratorExit) as exc:
            raise HookAbortedError(f"raised {type(exc).__name__}") from exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the turn itself is being cancelled
            raise HookAbortedError("raised CancelledError") from exc

    async def _in_thread(
        self, impl: pluggy.HookImpl, function: Callable[..., Any], kwargs: dict[str, Any]
    ) -> Any:
        """Run a plain implementation in the host's own threads (never the loop's
        default executor, which password hashing and embeddings use: a plugin
        that hangs must not starve them)."""
        key = id(impl.function)
        running = self._overdue.get(key)
        if running is not None and not running.done():
            raise HookStuckError(
                "still running since a call of it missed its deadline; not called again "
                "until that call returns"
            )
        self._overdue.pop(key, None)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=THREADS, thread_name_prefix="mongars-hook"
            )
        # In a copy of this context, as asyncio.to_thread does (the trace context).
        call = functools.partial(contextvars.copy_context().run, function, **kwargs)
        future = self._executor.submit(call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # already running: Python cannot stop a thread
                self._overdue[key] = future
            raise

    def close(self) -> None:
        """Let go of the worker threads (one still running a plugin is abandoned)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
