"""The llama.cpp engine: GGUF models through xllamacpp, the default local engine on CPUs with AVX2.

Registers the LLM backend ``llamacpp`` (one of the engines behind ``local``,
see :mod:`mongars_core.local_engine`) and the settings section
``MONGARS_LLAMACPP__*``. xllamacpp is imported only when a model is loaded;
without it (the ``local`` extra) the backend says so through
``unavailable_reason()`` and ``local`` is served by the next engine.
See docs/llamacpp.md.
"""

from __future__ import annotations

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.settings import Settings
from mongars_plugins.llamacpp.backend import LlamaCppBackend
from mongars_plugins.llamacpp.settings import LLAMACPP


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(LLAMACPP)


@hookimpl(trylast=True)
def mongars_register_llm_backends(register: Register, settings: Settings) -> None:
    register("llamacpp", LlamaCppBackend(settings))


__all__ = ["LLAMACPP", "LlamaCppBackend"]
