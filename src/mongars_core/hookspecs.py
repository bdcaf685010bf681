"""Hook specifications: every point where a plugin can change monGARS.

There are three kinds of hooks:

* **Assembly hooks** (``mongars_register_*``) run once, when an
  :class:`~mongars_core.pipeline.Assistant` (or the server) is built. They take
  a ``register`` callback; registering a name twice is an error naming both
  plugins.
* **Lifecycle hooks** (``mongars_startup`` / ``mongars_shutdown``) open and
  close the resources a plugin holds.
* **Runtime hooks** run during each turn, in the order of
  docs/architecture.md. They receive the :class:`~mongars_core.types.Turn` in
  progress. Any runtime or lifecycle hook may return an awaitable instead of a
  value; the pipeline awaits it. Blocking implementations are run in a worker
  thread, so a plugin may do blocking I/O in a plain ``def``.

docs/plugin_hooks.md documents each hook with an example; a test keeps it in
step with this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mongars_core.services import Services
    from mongars_core.settings import Section, Settings
    from mongars_core.storage.unit_of_work import UnitOfWork
    from mongars_core.types import KnowledgeGap, Reply, RetrievalQuery, Turn

PROJECT_NAME = "mongars"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

MaybeAwaitable = Any
"""A value, or an awaitable resolving to it (typing stays loose for plugin authors)."""

Register = Callable[[str, Any], None]
"""``register(name, obj)``: the callback of a ``mongars_register_*`` hook."""

RegisterSection = Callable[["Section[Any]"], None]
"""``register(section)``: the callback of :func:`mongars_register_settings`."""


# -- assembly -----------------------------------------------------------------


@hookspec
def mongars_register_settings(register: RegisterSection) -> None:
    """Declare the plugin's settings sections: ``register(section)``.

    Called first while the assistant, the server or the ``mongars`` command is
    built, before any other assembly hook. ``section`` is a
    :class:`mongars_core.settings.Section`: a name and a pydantic model, read
    from ``MONGARS_<NAME>__<FIELD>`` environment variables (and from
    ``Settings(<name>={...})``). A plugin reads its values with
    ``settings.section(SECTION)``. Every registered section is read at
    assembly, so a bad value fails at start-up in one line naming its
    variable. Two plugins registering one name is an error naming both.
    ``python -m mongars_core.settings_docs`` renders every installed plugin's
    sections (docs/configuration.md holds the bundled ones). Returns nothing.
    """


@hookspec
def mongars_register_llm_backends(register: Register, settings: Settings) -> None:
    """Register LLM backends: ``register(name, backend)``.

    Called once while the assistant is built. ``backend`` implements
    :class:`mongars_core.llm.LLMBackend` (async ``generate`` and ``stream``).
    The router picks a backend by the name in ``settings.llm.backend``.
    Returns nothing; must not return an awaitable (create connections lazily
    or in :func:`mongars_startup`).
    """


@hookspec
def mongars_register_embedders(register: Register, settings: Settings) -> None:
    """Register text embedders: ``register(name, embedder)``.

    Called once while the assistant is built. ``embedder`` implements
    :class:`mongars_core.llm.Embedder`. The memory plugin uses the one named
    by ``settings.memory.embedder`` (or the first registered when that is
    ``"auto"``) and falls back to lexical recall when there is none.
    Returns nothing.
    """


@hookspec
def mongars_register_routers(register: Register, settings: Settings) -> None:
    """Register HTTP routers for the server: ``register(name, router)``.

    Called once by ``mongars_server.create_app``; ``router`` is a FastAPI
    ``APIRouter``. The core never calls it. Returns nothing.
    """


@hookspec
def mongars_register_commands(register: Register, settings: Settings) -> None:
    """Register CLI sub-commands: ``register(name, typer_app)``.

    Called once when the ``mongars`` command starts; each ``typer.Typer``
    becomes ``mongars NAME ...``. Returns nothing.
    """


# -- lifecycle ------------------------------------------------------------------


@hookspec
def mongars_startup(services: Services) -> MaybeAwaitable:
    """Open the plugin's resources.

    Called once when the assistant starts (after storage is ready), with the
    :class:`mongars_core.services.Services` of the assistant. May return an
    awaitable. Returns nothing useful.
    """


@hookspec
def mongars_shutdown(services: Services) -> MaybeAwaitable:
    """Close what :func:`mongars_startup` opened.

    Called once when the assistant closes, even after a failed turn. May
    return an awaitable. Returns nothing useful.
    """


# -- runtime: one turn ---------------------------------------------------------------


@hookspec
def mongars_recall(turn: Turn) -> MaybeAwaitable:
    """Recall long-term memories relevant to ``turn.message``.

    Stage 2 of a turn. It runs while the short-term history loads, so
    ``turn.history`` may still be empty; reasoning and style run beside it
    too. Returns a list
    of :class:`~mongars_core.types.Memory` (or an awaitable of one); every
    plugin's list is merged, de-duplicated, ranked by ``score`` and cut to
    ``settings.memory.recall_limit`` items and ``recall_token_budget``
    words. Implementations must only return memories of ``turn.user_id``.
    """


@hookspec
def mongars_find_gaps(turn: Turn) -> MaybeAwaitable:
    """Name what the user asks about that memory and history don't know.

    Stage 3, after recall (``turn.memories`` is filled). Returns a list of
    :class:`~mongars_core.types.KnowledgeGap`; all plugins' lists are merged.
    """


@hookspec
def mongars_research(turn: Turn, gaps: list[KnowledgeGap]) -> MaybeAwaitable:
    """Look up the knowledge gaps found in stage 3, and the question itself.

    Called every turn after gap detection, with the gaps found (possibly none:
    the user's documents may still answer the question). Returns a list of
    :class:`~mongars_core.types.Finding` that the model receives as context;
    all plugins' lists are merged. A finding with a ``number`` (and the
    ``passage`` it came from) is shown as the numbered source ``[n]`` the reply
    cites and listed in ``Reply.sources``. An implementation may set
    ``turn.clarification`` to one clarifying question when the question depends
    on a gap nothing resolves: the pipeline replies with it instead of
    generating (unless a reasoning hint answers the question). The bundled
    ``research`` plugin (``mongars_plugins.knowledge.research``) implements it.
    """


@hookspec
def mongars_retrieve(services: Services, query: RetrievalQuery) -> MaybeAwaitable:
    """Find passages of ``query.user_id`` relevant to ``query.text``.

    Called by :func:`mongars_core.retrieval.retrieve`, the one retrieval that
    recall, research and the RAG route share. Returns a list of
    :class:`~mongars_core.types.Passage`, best first, of the ``query.kinds`` the
    plugin holds (the memory plugin memories, the knowledge plugin document
    chunks), at most ``query.limit``, each with ``query.neighbours`` adjacent
    items on each side. Every plugin's list is fused by reciprocal rank.
    Implementations must only return what ``query.user_id`` may read.
    """


@hookspec
def mongars_reason(turn: Turn) -> MaybeAwaitable:
    """Compute what the model can't: arithmetic, unit conversions, dates.

    Stage 4. Returns a list of :class:`~mongars_core.types.ReasoningHint`
    handed to the model as verified facts; all plugins' lists are merged.
    """


@hookspec
def mongars_style_instructions(turn: Turn) -> MaybeAwaitable:
    """Say how the reply should be written for this user.

    Stage 5. Returns a list of short instructions (``str``) appended to the
    system prompt; all plugins' lists are merged in plugin order.
    """


@hookspec
def mongars_adapt_reply(turn: Turn, text: str) -> MaybeAwaitable:
    """Transform the generated reply text.

    Stage 7. Implementations run one after another in plugin call order, each
    receiving the text the previous one returned. Return the new text, or
    ``None`` to leave it unchanged. May return an awaitable.
    """


@hookspec
def mongars_scrub(text: str) -> str | None:
    """Replace personal data in ``text`` with typed placeholders (``<EMAIL>``, ``<PHONE>``...).

    Called on every text before it enters a training set, a run record or a
    log line about one. Implementations run one after another in plugin call
    order, each receiving the text the previous one returned; return the new
    text, or ``None`` to leave it unchanged. Must be a plain (not ``async``)
    function: it is called where no event loop runs. A scrubber that raises
    stops the work that asked (text is never passed on unscrubbed).
    """


@hookspec(firstresult=True)
def mongars_plan_speech(turn: Turn, text: str) -> MaybeAwaitable:
    """Plan (and, where an engine exists, synthesize) how the reply is spoken.

    Stage 8. Returns a :class:`~mongars_core.types.SpeechPlan`; the first
    non-``None`` result wins, so a plugin can replace the bundled planner by
    being called before it (bundled one is ``trylast``).
    """


@hookspec
def mongars_remember(turn: Turn, reply: Reply, writes: UnitOfWork) -> MaybeAwaitable:
    """Store what should be remembered of the finished turn.

    Stage 9. Stage the writes in ``writes`` (a
    :class:`~mongars_core.storage.unit_of_work.UnitOfWork`) rather than
    writing to the store: the turn row and every plugin's writes are then
    committed in one transaction before the reply is returned, and a callback
    given to ``writes.after_commit`` runs once they are (update a cache
    there). Returns nothing useful. A failure is logged and does not fail the
    turn.
    """


@hookspec
def mongars_forget(
    services: Services, user_id: str, memory_ids: list[int] | None
) -> MaybeAwaitable:
    """Drop what the plugin holds about memories deleted through the library.

    Called after ``Assistant.delete_memory`` (``memory_ids`` lists the ids)
    or ``Assistant.delete_memories`` (``memory_ids`` is ``None``: all of the
    user's memories are gone). Plugins that cache memories must drop them.
    Returns nothing useful.
    """


@hookspec
def mongars_invalidate(services: Services, user_id: str) -> MaybeAwaitable:
    """Drop whatever the plugin caches about a user: it changed elsewhere.

    Called by ``Assistant.invalidate(user_id)``, which a host running several
    processes over one database calls when another process changed the user's
    data (a turn, a deleted memory). The next use reloads from storage. Must
    not delete stored data. Returns nothing useful; a failure is raised.
    """


@hookspec
def mongars_export_user(services: Services, user_id: str) -> MaybeAwaitable:
    """What the plugin stores of ``user_id``, for their export.

    Called by ``Assistant.export_history`` after the core's own records. Returns a
    list of JSON-ready ``dict`` records, each with a ``"type"`` (``"document"``...);
    they are appended to the user's export. Returns ``None`` or ``[]`` when the
    plugin holds nothing of the user.
    """


@hookspec
def mongars_erase_user(services: Services, user_id: str) -> MaybeAwaitable:
    """Delete everything the plugin stores or caches of ``user_id``.

    Called by ``Assistant.forget_user`` ("forget me") and when an account is
    deleted with its data, after the core deleted the user's history, memories
    and plugin state. Delete stored data (documents, index files) as well as
    caches. Returns nothing useful; a failure is raised to the caller, so nobody
    is told their data is gone while some remains.
    """


@hookspec
def mongars_turn_completed(turn: Turn, reply: Reply, writes: UnitOfWork) -> MaybeAwaitable:
    """Observe a completed turn (style learning, metrics, self-training curation).

    Stage 10, beside :func:`mongars_remember`; plugin state to keep (a style
    profile) goes into ``writes``, committed with the turn. Returns nothing
    useful. A failure is logged and does not fail the turn.
    """


# -- peers (specs only for now) ------------------------------------------------------


@hookspec
def mongars_register_peer_transports(register: Register, settings: Settings) -> None:
    """Register transports that carry encrypted messages to other monGARS nodes.

    ``register(name, transport)``. Called once at assembly. No bundled plugin
    implements it yet; the peers plugin will.
    """


@hookspec(firstresult=True)
def mongars_peer_message(peer_id: str, payload: dict[str, Any]) -> MaybeAwaitable:
    """Handle an authenticated message received from another node.

    Called for each incoming peer message. Return a ``dict`` to answer, or
    ``None``; the first non-``None`` answer is sent back. No bundled plugin
    implements it yet.
    """
