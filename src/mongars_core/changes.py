"""Telling other processes on this machine that a user's data changed.

A running server caches each user's session history and memory index. When
another process changes that user's data (``mongars forget``, ``mongars
memories import`` or ``delete`` beside a running server), the server must not
go on answering from its cache. Servers sharing Redis hear of it through the
event bus; every process of a data directory also stamps a small file per user
(``<data dir>/changes/<hash of the user id>``). Before a turn or a search the
assistant compares the stamp with the one it last saw and, when another
process moved it, drops what it caches about the user. A stamp is one
``stat`` call, so a turn pays microseconds for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class ChangeStamps:
    """Per-user change stamps under ``folder``, and the ones this process last saw."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen: dict[str, int] = {}

    def _path(self, user_id: str) -> Path:
        return self.folder / hashlib.sha256(user_id.encode()).hexdigest()[:32]

    def _read(self, user_id: str) -> int | None:
        try:
            return self._path(user_id).stat().st_mtime_ns
        except OSError:
            return None

    def touch(self, user_id: str) -> None:
        """Record that this process changed ``user_id``'s data (others reload it)."""
        path = self._path(user_id)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path.touch()
            # A stamp always moves, even within the file system's time resolution.
            stamp = max(path.stat().st_mtime_ns, self._seen.get(user_id, 0) + 1)
            os.utime(path, ns=(stamp, stamp))
        except OSError as exc:
            logger.warning("could not stamp a change of %s's data (%s)", user_id, exc)
            return
        self._seen[user_id] = stamp

    def changed_elsewhere(self, user_id: str) -> bool:
        """Whether another process stamped ``user_id`` since this one last looked.

        The first look only records the stamp (or its absence): a process that
        had not looked at the user yet caches nothing of them.
        """
        stamp = self._read(user_id) or 0
        seen = self._seen.get(user_id)
        self._seen[user_id] = stamp
        return seen is not None and seen != stamp
