"""monGARS core: hook specifications, plugin manager, pipeline, storage and types."""

from mongars_core.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
