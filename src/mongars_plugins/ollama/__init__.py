"""LLM backends (and an embedder) on Ollama servers, through the official ``ollama`` client.

Registers one LLM backend per host of ``MONGARS_OLLAMA__HOSTS`` (``ollama``
for a single unnamed host, else ``ollama:NAME``), the same names as embedders
when ``MONGARS_OLLAMA__EMBED_MODEL`` is set, and the ``mongars ollama``
commands. Nothing is contacted and ``ollama`` is not imported until a backend
is used; without the package, use raises
:class:`~mongars_core.errors.MissingDependencyError` naming ``mongars-assistant[ollama]``.

A stand-in server that follows Ollama's documented REST API, for tests (it
is not Ollama), ships with the test kit: :mod:`mongars_testkit.ollama_standin`.
"""

from __future__ import annotations

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.settings import Settings
from mongars_plugins.ollama.backend import OllamaBackend, build_backends
from mongars_plugins.ollama.embedder import OllamaEmbedder
from mongars_plugins.ollama.hosts import OllamaHost, parse_hosts
from mongars_plugins.ollama.settings import OLLAMA, OllamaSettings

__all__ = [
    "OLLAMA",
    "OllamaBackend",
    "OllamaEmbedder",
    "OllamaHost",
    "OllamaSettings",
    "build_backends",
    "parse_hosts",
]


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(OLLAMA)


@hookimpl
def mongars_register_llm_backends(register: Register, settings: Settings) -> None:
    for backend in build_backends(settings.section(OLLAMA)):
        register(backend.name, backend)


@hookimpl
def mongars_register_embedders(register: Register, settings: Settings) -> None:
    ollama = settings.section(OLLAMA)
    model = ollama.embed_model
    if model is None:
        return
    for host in parse_hosts(ollama.hosts):
        register(host.backend_name, OllamaEmbedder(host, ollama, model))


@hookimpl
def mongars_register_commands(register: Register, settings: Settings) -> None:
    from mongars_plugins.ollama.cli import build_ollama_app

    register("ollama", build_ollama_app(settings))
