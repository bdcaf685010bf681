"""Model roles chosen on the command line, kept beside the data.

``mongars models add FILE.gguf --role coding`` makes the added model serve the
role ``coding``. Such choices live in ``<data dir>/model_roles.json``
(``{"coding": [{"backend": "local", "model": "my-model"}]}``), written
atomically (synced, then renamed into place) under a lock file
(``<data dir>/.model_roles.lock``), so that processes assigning roles at once
keep every role; a role set in ``MONGARS_LLM__ROLES`` wins over the file.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from mongars_core.errors import ConfigurationError
from mongars_core.files import write_atomically
from mongars_core.settings import EndpointSpec

FILE_NAME = "model_roles.json"
LOCK_NAME = ".model_roles.lock"
_ROLES = TypeAdapter(dict[str, list[EndpointSpec]])


def roles_path(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def read_roles(data_dir: Path) -> dict[str, list[EndpointSpec]]:
    """The roles in ``<data dir>/model_roles.json``; none when there is no file."""
    path = roles_path(data_dir)
    try:
        return _ROLES.validate_json(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValidationError as exc:
        raise ConfigurationError(
            f"{path} is not a valid model role file ({exc.error_count()} errors, first: "
            f"{exc.errors()[0]['msg']}); fix or delete it"
        ) from None


def assign_role(data_dir: Path, role: str, endpoints: list[EndpointSpec]) -> None:
    """Make ``endpoints`` serve ``role`` (replacing what the file had for it)."""
    if not role or not role.replace("-", "").replace("_", "").isalnum():
        raise ConfigurationError(f"invalid role {role!r}: letters, digits, '-' and '_'")
    path = roles_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        roles = read_roles(data_dir)
        roles[role] = endpoints
        _write(path, roles)


def drop_model(data_dir: Path, backend: str, model: str) -> list[str]:
    """Take ``backend``'s ``model`` out of every role (a role left with no endpoint goes);
    the names of the roles changed."""
    path = roles_path(data_dir)
    if not path.exists():
        return []
    with open(path.parent / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        roles = read_roles(data_dir)
        changed = [
            role
            for role, specs in roles.items()
            if any(spec.backend == backend and spec.model == model for spec in specs)
        ]
        if not changed:
            return []
        for role in changed:
            kept = [s for s in roles[role] if not (s.backend == backend and s.model == model)]
            if kept:
                roles[role] = kept
            else:
                del roles[role]
        _write(path, roles)
    return changed


def _write(path: Path, roles: dict[str, list[EndpointSpec]]) -> None:
    text = json.dumps(
        {
            name: [spec.model_dump(exclude_defaults=True) for spec in specs]
            for name, specs in roles.items()
        },
        indent=2,
    )
    write_atomically(path, text)
