"""Knowledge: the user's documents, chunked by their structure and searched (bundled plugin).

Each user has collections of documents (``notes`` by default), and every user
reads the shared collections administrators publish. Text, Markdown, HTML and
PDF files are parsed, chunked by their headings and paragraphs, embedded and
stored; :func:`mongars_core.retrieval.retrieve` finds their chunks beside the
user's memories (``mongars_retrieve`` of kind ``"document"``). docs/knowledge.md
describes it all.

What the plugin registers: the ``knowledge`` settings section, the ``docs``
command, the ``/api/v1/documents`` and ``/api/v1/review/rag-context`` routes,
the retention sweep (at start-up, then every ``knowledge.sweep_minutes``), and
the user's documents in their export and erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.services import Services, StashKey
from mongars_core.settings import Settings
from mongars_core.types import Passage, RetrievalQuery
from mongars_plugins.knowledge.documents import CollectionInfo, DocumentInfo, Library
from mongars_plugins.knowledge.settings import KNOWLEDGE, KnowledgeSettings

__all__ = ["KNOWLEDGE", "CollectionInfo", "DocumentInfo", "KnowledgeSettings", "Library", "library"]

logger = logging.getLogger(__name__)

LIBRARY: StashKey[Library] = StashKey("knowledge.library")
SWEEPER: StashKey[asyncio.Task[None]] = StashKey("knowledge.sweeper")


def library(services: Services) -> Library:
    """The assistant's :class:`Library` (one per assistant, made when first asked for)."""
    return services.stash.setdefault_factory(LIBRARY, lambda: Library(services))


async def _sweep(found: Library) -> None:
    try:
        await found.sweep()
    except Exception:  # the next sweep tries again; search already skips expired ones
        logger.exception("knowledge: the retention sweep failed")


async def _sweep_forever(found: Library, minutes: float) -> None:
    while True:
        await asyncio.sleep(minutes * 60)
        await _sweep(found)


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(KNOWLEDGE)


@hookimpl
def mongars_register_commands(register: Register, settings: Settings) -> None:
    from mongars_plugins.knowledge.cli import docs_app

    register("docs", docs_app)


@hookimpl
def mongars_register_routers(register: Register, settings: Settings) -> None:
    from mongars_plugins.knowledge.routes import rag_router, router

    register("documents", router)
    register("rag_context", rag_router)


@hookimpl
async def mongars_startup(services: Services) -> None:
    found = library(services)
    await _sweep(found)  # what expired while nothing ran goes before the first turn
    minutes = services.settings.section(KNOWLEDGE).sweep_minutes
    services.stash[SWEEPER] = asyncio.create_task(
        _sweep_forever(found, minutes), name="knowledge-sweep"
    )


@hookimpl
async def mongars_shutdown(services: Services) -> None:
    task = services.stash.pop(SWEEPER, None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@hookimpl
async def mongars_retrieve(services: Services, query: RetrievalQuery) -> list[Passage]:
    return await library(services).retrieve(query)


@hookimpl
async def mongars_invalidate(services: Services, user_id: str) -> None:
    library(services).forget_cached(user_id)


@hookimpl
async def mongars_export_user(services: Services, user_id: str) -> list[dict[str, Any]]:
    return await library(services).export_user(user_id)


@hookimpl
async def mongars_erase_user(services: Services, user_id: str) -> None:
    await library(services).erase_user(user_id)
