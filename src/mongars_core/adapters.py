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
import errno
import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

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
    owner: str | None = None
    """The user whose data it was trained on: it goes when their data is erased
    (:meth:`AdapterRegistry.forget_user`)."""

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
    log: list[dict[str, Any]] = Field(default_factory=list)
    """Who rolled which user back from which adapter, and when (the last 1,000):
    ``{"at", "action", "user", "adapter", "by"}``."""
    assigned_before: dict[str, list[str]] = Field(default_factory=dict)
    """User id -> the names assigned to them before (the last one last), so that
    rolling a user back past their first version of an adapter returns them to
    the adapter they had, not to the base."""


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
            before = manifest.users.get(user_id)
            if before is not None and before != name:
                manifest.assigned_before.setdefault(user_id, []).append(before)
            manifest.users[user_id] = name

    def unassign(self, user_id: str) -> bool:
        """Answer ``user_id`` with the base model again; ``False`` when nothing was assigned."""
        with self._locked() as manifest:
            manifest.assigned_before.pop(user_id, None)
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
        owner: str | None = None,
    ) -> Adapter:
        """Copy the adapter in ``source`` (a file or a folder) and record it; a copy
        that fails (a full disk) leaves nothing behind."""
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
            try:
                if target.exists():
                    shutil.rmtree(target)  # left by a registration that crashed
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target)
                else:
                    target.mkdir()
                    shutil.copy2(source, target / source.name)
            except (OSError, shutil.Error) as exc:
                shutil.rmtree(target, ignore_errors=True)
                raise InvalidInputError(
                    f"cannot copy adapter {name} {version} into {self.root}: {_why(exc)}"
                ) from None
            files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
            adapter = Adapter(
                name=name,
                version=version,
                base_model=base_model,
                sha256=files_checksum(target, files),
                files=files,
                path=str(target),
                metrics=metrics or {},
                owner=owner,
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

    def events_for(self, adapter_id: str) -> list[dict[str, Any]]:
        """The log entries about ``name@version``, oldest first."""
        return [entry for entry in self._read().log if entry.get("adapter") == adapter_id]

    def rollback_user(self, user_id: str, *, by: str = "operator") -> Adapter | None:
        """Go back, for ``user_id``, to the version of their adapter that was active
        before; with none before, to the adapter assigned to them before (if it is
        still active), else the base model. Returns the adapter now answering them
        (``None``: the base).

        Only a name whose every version was trained on the user's data (``owner``,
        as the learning plugin's adapters are) has its versions rolled back; from a
        name others may use, the user is only moved away.
        """
        with self._locked() as manifest:
            name = manifest.users.get(user_id)
            if name is None or name not in manifest.active:
                raise AdapterNotFoundError(f"{user_id} has no adapter to roll back")
            entry = {"at": utcnow().isoformat(), "action": "rolled back", "user": user_id}
            entry.update(adapter=f"{name}@{manifest.active[name]}", by=by)
            manifest.log = [*manifest.log[-999:], entry]
            theirs = all(a.owner == user_id for a in manifest.adapters if a.name == name)
            history = manifest.history.get(name) or []
            if theirs and history:
                previous = history.pop()
                manifest.active[name] = previous
                return _find(manifest, name, previous)
            if theirs:
                del manifest.active[name]
            del manifest.users[user_id]
            earlier = manifest.assigned_before.get(user_id) or []
            while earlier:  # the adapter they had before this one, if it is still active
                before = earlier.pop()
                version = manifest.active.get(before)
                if version is not None:
                    manifest.users[user_id] = before
                    return _find(manifest, before, version)
            manifest.assigned_before.pop(user_id, None)
            return None

    def forget_user(self, user_id: str) -> list[Adapter]:
        """Erase what the registry holds of ``user_id``: their assignment, and the
        adapters trained on their data (``owner``), files included. The adapters removed."""
        with self._locked() as manifest:
            manifest.users.pop(user_id, None)
            manifest.assigned_before.pop(user_id, None)
            manifest.log = [e for e in manifest.log if e.get("user") != user_id]
            theirs = [a for a in manifest.adapters if a.owner == user_id]
            manifest.adapters = [a for a in manifest.adapters if a.owner != user_id]
            for name in {a.name for a in theirs}:
                kept = {a.version for a in manifest.adapters if a.name == name}
                history = [v for v in manifest.history.pop(name, []) if v in kept]
                if manifest.active.get(name) not in kept:  # theirs was active
                    manifest.active.pop(name, None)
                    if history:
                        manifest.active[name] = history.pop()
                if history:
                    manifest.history[name] = history
            for adapter in theirs:
                shutil.rmtree(adapter.path, ignore_errors=True)
            return theirs

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
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.manifest_path}: {_why(exc)}") from None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != stamp:
            self._cache = (stamp, self._parse())
        return self._cache[1]

    def _parse(self) -> Manifest:
        try:
            return Manifest.model_validate_json(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return Manifest()
        except ValidationError as exc:
            first = exc.errors()[0]
            # The section and any list index: a key may be a user id, not to be shown.
            parts = [str(p) for i, p in enumerate(first["loc"]) if i == 0 or isinstance(p, int)]
            where = ".".join(parts) or "the file"
            raise InvalidInputError(
                f"the adapter manifest {self.manifest_path} is damaged ({where}: "
                f"{first['msg']}); restore it from a backup or remove it"
            ) from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.manifest_path}: {_why(exc)}") from None

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


def erase_user(registry: AdapterRegistry, cache_dir: Path, user_id: str) -> int:
    """:meth:`AdapterRegistry.forget_user`, and the converted copies of the adapters
    removed in ``cache_dir`` (the llama.cpp engine's, keyed by checksum). How many
    adapters went."""
    removed = registry.forget_user(user_id)
    for adapter in removed:
        if adapter.sha256:
            with contextlib.suppress(OSError):  # a cache: what cannot go is only a copy
                (Path(cache_dir) / "adapters" / f"{adapter.sha256}.gguf").unlink(missing_ok=True)
    return len(removed)


def check_folder(folder: Path, sha256: str) -> None:
    """Raise :class:`InvalidInputError` when the files in ``folder`` (all of them, in
    name order, as :meth:`AdapterRegistry.register` counted them) do not match
    ``sha256``: an adapter changed or damaged since it was registered."""
    files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
    if files_checksum(Path(folder), files) != sha256:
        raise InvalidInputError(
            f"the files in {folder} do not match the registry's checksum "
            "(changed or damaged since it was registered)"
        )


def _why(exc: BaseException) -> str:
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in str(exc):
        return "the disk is full"
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        return str(exc.args[0][0][-1])[:200] if exc.args[0] else "the copy failed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def files_checksum(root: Path, files: list[str]) -> str:
    """SHA-256 over ``files`` of ``root`` in the order given, each name then its bytes."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(root / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
