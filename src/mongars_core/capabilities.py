"""Optional abilities of a backend or embedder, as :class:`typing.Protocol` classes.

An LLM backend must only generate and stream (:class:`mongars_core.llm.LLMBackend`).
Everything else a backend may be able to do is one of these protocols; the core,
the CLI and the server ask ``has_ability(backend, HealthChecked)`` rather than
probing for attributes by name. Each protocol is ``runtime_checkable``: a
backend has the ability when it has the members, whatever it inherits from
(:func:`has_ability` checks that the members exist without running them, mypy
checks their types).

* :class:`Loadable` (``async load()``, ``loaded``): the router loads it before the
  generation deadlines start; ``/ready`` says "loading" until it is loaded.
* :class:`HealthChecked` (``async health()``): ``/ready`` and the LLM health API ask it.
* :class:`ModelCatalog` (``model``, ``async list_models()``, ``async pull()``):
  provisioning pulls its models; the model profile says which it has.
* :class:`Fetchable` (``async fetch()``): ``mongars serve`` fetches its model first.
* :class:`ReportsProgress` (a settable ``progress`` callback): the CLI draws its
  download progress.
* :class:`TokenCounter` (``count_prompt_tokens()``, ``count_tokens()``): token usage
  is counted rather than estimated.
* :class:`ConstrainsOutput` (``can_constrain()``): it keeps a reply to a JSON schema or
  grammar (:class:`~mongars_core.types.OutputConstraint`); the router sends a
  constrained request only to such endpoints.
* :class:`ServesAdapters` (``can_serve_adapter()``): it generates with a request's LoRA
  adapter (:class:`~mongars_core.types.AdapterRef`); others use the base model.
* :class:`Runnable` (``unavailable_reason()``): it can say, without loading anything,
  why it cannot run on this machine; the ``local`` backend skips such an engine
  (:mod:`mongars_core.local_engine`).

No bundled embedder has an optional ability: the embedders load their model on
first use, and the memory plugin warms one up by embedding a text at start-up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from mongars_core.types import AdapterRef, ChatMessage, OutputConstraint

Progress = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``: called as long work (a download, a
conversion) advances; ``total`` is ``None`` when it is not known."""


@runtime_checkable
class Loadable(Protocol):
    """A backend that loads lazily (a local model, a cluster connection).

    The router calls :meth:`load` before the generation deadlines start, so a
    first-use load is not a timeout; ``/ready`` reports the backend as loading
    until :attr:`loaded` is true.
    """

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has finished."""
        ...

    async def load(self) -> None:
        """Load now; returns at once when already loaded (safe to call concurrently)."""
        ...


@runtime_checkable
class HealthChecked(Protocol):
    """A backend that can say whether it is reachable and able to serve."""

    async def health(self) -> bool:
        """``True`` when the backend answers and can serve; may raise on a network error."""
        ...


class InstalledModel(Protocol):
    """A model a :class:`ModelCatalog` backend has (what callers read of it)."""

    @property
    def name(self) -> str:
        """The model's full name, with its tag (``qwen2.5:7b``)."""
        ...

    @property
    def digest(self) -> str:
        """Changes when the model's files change (an update)."""
        ...


@runtime_checkable
class ModelCatalog(Protocol):
    """A backend that manages models: lists those it has and pulls others (Ollama)."""

    @property
    def model(self) -> str | None:
        """The model used when a request or an endpoint names none."""
        ...

    async def list_models(self) -> Sequence[InstalledModel]:
        """The models the backend has now."""
        ...

    async def pull(self, model: str, progress: Progress | None = None) -> object:
        """Fetch ``model`` onto the backend, reporting to ``progress``; the result is not used.

        A model the registry does not have raises
        :class:`~mongars_core.errors.ModelNotFoundError`.
        """
        ...


@runtime_checkable
class Fetchable(Protocol):
    """A backend that fetches its own model files (the local model).

    ``mongars serve`` calls :meth:`fetch` before the server starts, with
    progress shown when the backend also :class:`ReportsProgress`.
    """

    async def fetch(self) -> object:
        """Fetch (and convert) the model files without loading them; the result is not used."""
        ...


@runtime_checkable
class ReportsProgress(Protocol):
    """A backend that reports the progress of long work (a download) to a callback.

    The CLI sets :attr:`progress` to draw progress bars; ``None`` means the
    backend logs its progress instead.
    """

    progress: Progress | None


@runtime_checkable
class TokenCounter(Protocol):
    """A backend that can count tokens with its own tokenizer."""

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        """Tokens of ``messages`` as the model reads them (chat template included);
        ``None`` when the tokenizer is not loaded."""
        ...

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text``; ``None`` when the tokenizer is not loaded."""
        ...


@runtime_checkable
class ConstrainsOutput(Protocol):
    """A backend that can keep a reply to a JSON schema or a grammar."""

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        """Whether it can keep to ``constraint`` now (an engine that is not chosen or
        loaded yet may answer for the engine it will use). A schema it cannot
        compile is an :class:`~mongars_core.errors.InvalidInputError` at generation."""
        ...


@runtime_checkable
class ServesAdapters(Protocol):
    """A backend that generates with a request's LoRA adapter, per request."""

    def can_serve_adapter(self, adapter: AdapterRef) -> bool:
        """Whether it would apply ``adapter`` (it serves the adapter's base model)."""
        ...


@runtime_checkable
class Runnable(Protocol):
    """A backend that knows, without loading anything, whether it can run here."""

    def unavailable_reason(self) -> str | None:
        """Why it cannot run on this machine (``"the CPU lacks AVX2"``, a missing
        package), or ``None`` when it can. Cheap: no model is read."""
        ...


def has_ability(obj: object, ability: type) -> bool:
    """``isinstance(obj, ability)``, where a runtime-checkable Protocol is checked
    without reading ``obj``'s attributes.

    Python 3.11's ``isinstance`` evaluates properties to see whether they
    exist, so a ``loaded`` or ``dimension`` property that blocks, asks a
    server or raises would run (or hide the ability). This looks the members
    up statically instead. Use it rather than ``isinstance`` for every
    Protocol check of a backend or embedder.
    """
    if not getattr(ability, "_is_protocol", False):
        return isinstance(obj, ability)
    missing = object()
    members = list(vars(ability).get("__annotations__", {})) + [
        name
        for name, value in vars(ability).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    ]
    return all(inspect.getattr_static(obj, name, missing) is not missing for name in members)
