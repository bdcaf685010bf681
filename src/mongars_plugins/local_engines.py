"""The local model for processes that run only it: Ray Serve replicas, the Ollama stand-in.

The server's backend ``local`` is a :class:`~mongars_core.local_engine.LocalEngine`
over the engines the bundled plugins register (``llamacpp``, ``torch``), in
``llm.local_engines`` order. :func:`local_engine` builds the same thing
without a plugin host, so a Ray replica or the stand-in makes the same choice
(and hands over to the next engine the same way) as the server on that machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from mongars_core.errors import ConfigurationError
from mongars_core.local_engine import LocalEngine
from mongars_core.settings import Settings

if TYPE_CHECKING:
    from mongars_core.llm import LLMBackend

logger = logging.getLogger(__name__)


def _llamacpp(settings: Settings) -> LLMBackend:
    from mongars_plugins.llamacpp.backend import LlamaCppBackend

    return cast("LLMBackend", LlamaCppBackend(settings))


def _torch(settings: Settings) -> LLMBackend:
    from mongars_plugins.cuda.backend import LocalModelBackend

    return cast("LLMBackend", LocalModelBackend(settings))


BUNDLED_ENGINES: dict[str, Callable[[Settings], LLMBackend]] = {
    "llamacpp": _llamacpp,
    "torch": _torch,
}
"""Engine name (as in ``llm.local_engines``) -> the bundled backend that runs it."""


def local_engine(settings: Settings, engines: Sequence[str] | None = None) -> LocalEngine:
    """The bundled engines of ``engines`` (default ``settings.llm.local_engines``), in that
    order, behind one :class:`LocalEngine`. Names no bundled plugin provides are skipped
    (logged); none left is a :class:`ConfigurationError`."""
    names = list(settings.llm.local_engines if engines is None else engines)
    chosen: list[tuple[str, LLMBackend]] = []
    for name in names:
        build = BUNDLED_ENGINES.get(name)
        if build is None:
            logger.warning("%r is not a bundled local engine; skipped here", name)
            continue
        chosen.append((name, build(settings)))
    if not chosen:
        raise ConfigurationError(
            f"MONGARS_LLM__LOCAL_ENGINES ({', '.join(names) or 'empty'}) names no bundled "
            f"local engine; use {' or '.join(BUNDLED_ENGINES)}"
        )
    return LocalEngine(chosen)


__all__ = ["BUNDLED_ENGINES", "local_engine"]
