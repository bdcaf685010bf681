"""The one place the ray_serve plugin imports Ray.

Ray reads some settings from the environment once, when it is imported: a
local cluster that listens on loopback only needs
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's single-machine mode) and the
cluster's token settings. :func:`require_ray` sets them before the first
import, and refuses to go on when Ray was imported earlier without them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from types import ModuleType

from mongars_core.errors import ConfigurationError, MissingDependencyError


def require_ray(environment: Mapping[str, str] | None = None) -> ModuleType:
    """Import ray (and ray.serve) with ``environment`` applied, or name the extra.

    Returns the ``ray`` module; ``ray.serve`` and ``ray.exceptions`` are
    imported too, so callers reach them as attributes.
    """
    environment = environment or {}
    if "ray" in sys.modules:
        stale = {
            name: value for name, value in environment.items() if os.environ.get(name) != value
        }
        if stale:
            wanted = " ".join(f"{name}={value}" for name, value in stale.items())
            raise ConfigurationError(
                f"ray was imported before monGARS could configure it for its local cluster; "
                f"set {wanted} in the environment before starting"
            )
    else:
        os.environ.update(environment)
    try:
        with warnings.catch_warnings():
            # ray.serve's config models use pydantic-v1-style Field() extras; the
            # deprecation is ray's to fix and would fail hosts that run with -W error.
            warnings.simplefilter("ignore", DeprecationWarning)
            import ray
            import ray.exceptions
            import ray.serve
            import ray.serve.exceptions
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray") from exc
    return ray
