"""Model roles chosen on the command line, kept beside the data.

``mongars models add FILE.gguf --role coding`` makes the added model serve the
role ``coding``. Such choices live in ``<data dir>/model_roles.json``
(``{"coding": [{"backend": "local", "model": "my-model"}]}``), written
atomically; a role set in ``MONGARS_LLM__ROLES`` wins over the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from mongars_core.errors import ConfigurationError
from mongars_core.settings import EndpointSpec

FILE_NAME = "model_roles.json"
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
    roles = read_roles(data_dir)
    roles[role] = endpoints
    path = roles_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        {
            name: [spec.model_dump(exclude_defaults=True) for spec in specs]
            for name, specs in roles.items()
        },
        indent=2,
    )
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".model_roles-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
