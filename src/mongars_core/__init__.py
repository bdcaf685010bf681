"""monGARS core: hook specifications, plugin manager, pipeline, storage and types."""

from mongars_core.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
DISTRIBUTION = "mongars-assistant"
"""The name pip installs monGARS under (``mongars`` on PyPI is another project)."""
