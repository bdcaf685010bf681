"""The search engine the memory and knowledge plugins share.

:class:`HybridIndex` ranks items by BM25 and by dense similarity and fuses the
two by reciprocal rank, with time awareness, expiry, neighbours and snapshots
(see :mod:`.index`). Not a plugin itself: a library of the bundled plugins.
"""

from mongars_plugins.search.index import Hit, HybridIndex, IndexItem, mentions_time
from mongars_plugins.search.lexical import tokens
from mongars_plugins.search.persist import SnapshotError

__all__ = ["Hit", "HybridIndex", "IndexItem", "SnapshotError", "mentions_time", "tokens"]
