"""The adapter registry: LoRA adapters that training produces, and which is active.

Adapters live under ``<data dir>/adapters/<name>/<version>/`` beside a
manifest, ``<data dir>/adapters/manifest.json``::

    {"adapters": [{"name", "version", "base_model", "sha256", "files",
                   "created_at", "path", "metrics"}],
     "active": {"<name>": "<version>"},
     "history": {"<name>": ["<version>", ...]},
     "users": {"<user id>": "<name>"}}

``register`` copies an adapter's files in and records their checksum;
``activate`` makes a version the active one (remembering the previous one);
``rollback`` goes back to the version active before (``rollback_user``: for one
user, to the base model when there is none); ``assign`` gives a user an
adapter by name, so :meth:`AdapterRegistry.for_user` answers that user's turns with
the name's active version (and follows activations and rollbacks). Every change rewrites the
manifest atomically (a temporary file renamed over it) under a lock file, so a
crash never leaves half a manifest and two processes never interleave. Reads
happen on every turn, so the parsed manifest is kept and parsed again only when
the file changed (a ``stat`` per read).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mongars_core.errors import InvalidInputError, NotFoundError
from mongars_core.files import write_atomically
from mongars_core.types import AdapterRef, utcnow

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

    def ref(self) -> AdapterRef:
        """What a generation request carries of this adapter."""
        return AdapterRef(
            name=self.name,
            version=self.version,
            path=self.path,
            base_model=self.base_model,
            sha256=self.sha256,
        )


class Manifest(BaseModel):
    adapters: list[Adapter] = Field(default_factory=list)
    active: dict[str, str] = Field(default_factory=dict)
    history: dict[str, list[str]] = Field(default_factory=dict)
    users: dict[str, str] = Field(default_factory=dict)
    """User id -> the adapter name whose active version answers that user's turns."""


class AdapterRegistry:
    """The manifest of adapters under ``root`` (``<data dir>/adapters``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self._cache: tuple[tuple[int, int, int], Manifest] | None = None

    def adapters(self) -> list[Adapter]:
        return list(self._read().adapters)

    def users(self) -> dict[str, str]:
        """User id -> the adapter name assigned to that user."""
        return dict(self._read().users)

    def for_user(self, user_id: str) -> Adapter | None:
        """The active version of the adapter assigned to ``user_id``; ``None`` when the
        user has none (or its adapter has no active version). Read on every turn: the
        parsed manifest is kept until the file changes, so this costs one ``stat``."""
        manifest = self._read()
        name = manifest.users.get(user_id)
        version = None if name is None else manifest.active.get(name)
        return None if name is None or version is None else _find(manifest, name, version)

    def assign(self, user_id: str, name: str) -> None:
        """Answer ``user_id``'s turns with the active version of adapter ``name``."""
        if not user_id:
            raise InvalidInputError("a user id is needed to assign an adapter")
        with self._locked() as manifest:
            if not any(adapter.name == name for adapter in manifest.adapters):
                raise AdapterNotFoundError(f"no adapter {name!r} is registered")
            manifest.users[user_id] = name

    def unassign(self, user_id: str) -> bool:
        """Answer ``user_id`` with the base model again; ``False`` when nothing was assigned."""
        with self._locked() as manifest:
            return manifest.users.pop(user_id, None) is not None

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
                sha256=files_checksum(target, files),
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

    def rollback_user(self, user_id: str) -> Adapter | None:
        """Go back, for ``user_id``, to the version of their adapter that was active
        before; with none before, answer them with the base model again. Returns the
        adapter now answering them (``None``: the base).

        The user's adapter name is rolled back, so this suits a name only they use
        (as the learning plugin's per-user adapters are).
        """
        with self._locked() as manifest:
            name = manifest.users.get(user_id)
            if name is None or name not in manifest.active:
                raise AdapterNotFoundError(f"{user_id} has no adapter to roll back")
            history = manifest.history.get(name) or []
            if not history:
                del manifest.active[name]
                del manifest.users[user_id]
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
        if files_checksum(path, adapter.files) != adapter.sha256:
            raise InvalidInputError(
                f"adapter {adapter.name} {adapter.version} does not match its checksum"
            )

    # -- the manifest ------------------------------------------------------------

    def _read(self) -> Manifest:
        """The manifest, parsed again only when the file changed; callers must not change it.

        Every write renames a new file over the manifest, so the inode changes with
        each write even when neither the size nor the mtime (at its resolution) does.
        """
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            return Manifest()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != stamp:
            self._cache = (stamp, self._parse())
        return self._cache[1]

    def _parse(self) -> Manifest:
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
            manifest = self._parse()  # a fresh copy to change, never the cached one
            yield manifest
            write_atomically(
                self.manifest_path, json.dumps(manifest.model_dump(mode="json"), indent=2)
            )


def _find(manifest: Manifest, name: str, version: str) -> Adapter:
    for adapter in manifest.adapters:
        if adapter.name == name and adapter.version == version:
            return adapter
    raise AdapterNotFoundError(f"no adapter {name!r} version {version!r}")


def files_checksum(root: Path, files: list[str]) -> str:
    """SHA-256 over ``files`` of ``root`` in the order given, each name then its bytes."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(root / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
