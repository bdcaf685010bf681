"""The adapter registry: LoRA adapters that training produces, and which is active.

Adapters live under ``<data dir>/adapters/<name>/<version>/`` beside a
manifest, ``<data dir>/adapters/manifest.json``::

    {"adapters": [{"name", "version", "base_model", "sha256", "files",
                   "created_at", "path", "metrics"}],
     "active": {"<name>": "<version>"},
     "history": {"<name>": ["<version>", ...]}}

``register`` copies an adapter's files in and records their checksum;
``activate`` makes a version the active one (remembering the previous one);
``rollback`` goes back to the version active before. Every change rewrites the
manifest atomically (a temporary file renamed over it) under a lock file, so a
crash never leaves half a manifest and two processes never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mongars_core.errors import InvalidInputError, NotFoundError
from mongars_core.types import utcnow

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class AdapterNotFoundError(NotFoundError):
    """No adapter with this name and version is registered."""


class Adapter(BaseModel):
    name: str
    version: str
    base_model: str
    sha256: str = Field(description="SHA-256 over the adapter's files, in name order.")
    files: list[str]
    created_at: datetime = Field(default_factory=utcnow)
    path: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    adapters: list[Adapter] = Field(default_factory=list)
    active: dict[str, str] = Field(default_factory=dict)
    history: dict[str, list[str]] = Field(default_factory=dict)


class AdapterRegistry:
    """The manifest of adapters under ``root`` (``<data dir>/adapters``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"

    def adapters(self) -> list[Adapter]:
        return self._read().adapters

    def active(self, name: str) -> Adapter | None:
        manifest = self._read()
        version = manifest.active.get(name)
        return None if version is None else _find(manifest, name, version)

    def register(
        self,
        source: Path,
        *,
        name: str,
        version: str,
        base_model: str,
        metrics: dict[str, Any] | None = None,
    ) -> Adapter:
        """Copy the adapter in ``source`` (a file or a folder) and record it."""
        for label, value in (("name", name), ("version", version)):
            if not NAME_PATTERN.fullmatch(value):
                raise InvalidInputError(
                    f"invalid adapter {label} {value!r}: letters, digits, '_', '.', '-'"
                )
        source = Path(source)
        if not source.exists():
            raise InvalidInputError(f"no adapter at {source}")
        with self._locked() as manifest:
            if any(a.name == name and a.version == version for a in manifest.adapters):
                raise InvalidInputError(f"adapter {name} {version} is already registered")
            target = self.root / name / version
            if target.exists():
                shutil.rmtree(target)  # left by a registration that crashed
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                target.mkdir()
                shutil.copy2(source, target / source.name)
            files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
            adapter = Adapter(
                name=name,
                version=version,
                base_model=base_model,
                sha256=_checksum(target, files),
                files=files,
                path=str(target),
                metrics=metrics or {},
            )
            manifest.adapters.append(adapter)
            return adapter

    def activate(self, name: str, version: str) -> Adapter:
        """Make ``version`` the active adapter ``name``, after checking its files."""
        with self._locked() as manifest:
            adapter = _find(manifest, name, version)
            self.verify(adapter)
            current = manifest.active.get(name)
            if current != version:
                if current is not None:
                    manifest.history.setdefault(name, []).append(current)
                manifest.active[name] = version
            return adapter

    def rollback(self, name: str) -> Adapter | None:
        """Go back to the version active before; ``None`` when there was none."""
        with self._locked() as manifest:
            history = manifest.history.get(name) or []
            if not history:
                if name not in manifest.active:
                    raise AdapterNotFoundError(f"no adapter {name!r} is active")
                del manifest.active[name]
                return None
            previous = history.pop()
            manifest.active[name] = previous
            return _find(manifest, name, previous)

    def verify(self, adapter: Adapter) -> None:
        """Raise :class:`InvalidInputError` when the adapter's files changed."""
        path = Path(adapter.path)
        missing = [f for f in adapter.files if not (path / f).is_file()]
        if missing:
            raise InvalidInputError(f"adapter {adapter.name} {adapter.version} lost {missing}")
        if _checksum(path, adapter.files) != adapter.sha256:
            raise InvalidInputError(
                f"adapter {adapter.name} {adapter.version} does not match its checksum"
            )

    # -- the manifest ------------------------------------------------------------

    def _read(self) -> Manifest:
        try:
            return Manifest.model_validate_json(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return Manifest()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Manifest]:
        """The manifest to change, written back atomically when the block succeeds."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manifest = self._read()
            yield manifest
            text = json.dumps(manifest.model_dump(mode="json"), indent=2)
            descriptor, temporary = tempfile.mkstemp(dir=self.root, prefix=".manifest-")
            try:
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(text + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.manifest_path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise


def _find(manifest: Manifest, name: str, version: str) -> Adapter:
    for adapter in manifest.adapters:
        if adapter.name == name and adapter.version == version:
            return adapter
    raise AdapterNotFoundError(f"no adapter {name!r} version {version!r}")


def _checksum(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(root / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
