"""Database engines for the store, and what a driver's failure to open one means.

``create_engine`` checks the URL, makes a SQLite file private before SQLite
creates it, and sets SQLite's pragmas; ``unusable_database`` and
``driver_reason`` turn driver errors into one-line
:class:`~mongars_core.errors.StorageError` messages.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mongars_core.errors import (
    ConfigurationError,
    CorruptDatabaseError,
    DatabaseUnavailableError,
    DuplicateRecordError,
    MissingDependencyError,
    ReadOnlyDatabaseError,
    StorageError,
)


def create_engine(url: str) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    wanted = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}.get(backend)
    if wanted is None:
        # Before get_driver_name(), which loads the dialect: "redis://" has none.
        raise ConfigurationError(
            f"unsupported database {backend!r} in "
            f"{parsed.render_as_string(hide_password=True)!r}: use sqlite+aiosqlite:// "
            "or postgresql+asyncpg://"
        )
    try:
        driver = parsed.get_driver_name()
    except NoSuchModuleError:
        driver = parsed.drivername.partition("+")[2]
    if driver != wanted:
        raise ConfigurationError(
            f"database URL {parsed.render_as_string(hide_password=True)!r} uses driver "
            f"{driver!r}; monGARS talks to {backend} through {backend}+{wanted}://"
        )
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _private_database_file(Path(parsed.database).expanduser())
    try:
        engine = create_async_engine(parsed, pool_pre_ping=backend != "sqlite")
    except ImportError as exc:
        raise MissingDependencyError(
            wanted, "postgres" if backend == "postgresql" else "all"
        ) from exc
    except (ArgumentError, SQLAlchemyError) as exc:
        raise ConfigurationError(f"unusable database URL {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def _private_database_file(path: Path) -> None:
    """Create the SQLite file's folder (0700) and the file itself (0600) before SQLite does.

    Conversations are private: with the usual umask SQLite would create the
    file 0644 in a 0755 folder. SQLite gives its -wal and -shm files the
    database file's mode, so they stay private too. An existing file of ours
    that others can read is tightened.
    """
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            info = os.fstat(descriptor)
            if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                os.fchmod(descriptor, 0o600)
        finally:
            os.close(descriptor)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise ReadOnlyDatabaseError(
                f"the data folder {folder} is not writable ({exc.strerror or exc}), "
                f"so the database {path} cannot be opened"
            ) from exc
        raise ConfigurationError(
            f"cannot use {folder} as the data folder: {exc.strerror or exc}"
        ) from exc


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL sync is durable across
    # application crashes, which is what a chat history needs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # What is deleted (a memory, a forgotten user) is overwritten, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


SQLITE_FILE_ERRORS = frozenset(
    {"SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CANTOPEN", "SQLITE_READONLY"}
)
"""SQLite errors that mean the file or its folder is unusable, not a failed statement."""


def _sqlite_error(exc: BaseException) -> str | None:
    name = getattr(getattr(exc, "orig", None), "sqlite_errorname", None)
    return name if isinstance(name, str) else None


def is_unusable_file(exc: BaseException) -> bool:
    """Whether a driver error says the SQLite file or its folder is unusable."""
    return _sqlite_error(exc) in SQLITE_FILE_ERRORS


def unusable_database(exc: OSError | DBAPIError, url: str) -> StorageError:
    """What a driver's failure to open or reach the database means, in one line."""
    parsed = make_url(url)
    name = _sqlite_error(exc)
    if name is None or not parsed.database:
        return DatabaseUnavailableError(
            f"cannot reach the database at {parsed.render_as_string(hide_password=True)}: "
            f"{driver_reason(exc)}"
        )
    database = Path(parsed.database).expanduser()
    if name == "SQLITE_NOTADB":
        return CorruptDatabaseError(
            f"the database file {database} is not a SQLite database (corrupt?)"
        )
    if name == "SQLITE_CORRUPT":
        return CorruptDatabaseError(
            f"the database file {database} is damaged ({driver_reason(exc)}): "
            "restore it from a backup"
        )
    # SQLite keeps its write-ahead log beside the file: the folder must be writable too.
    problem = _why_unwritable(database.parent)
    if problem is not None:
        return ReadOnlyDatabaseError(
            f"the data folder {database.parent} is not writable ({problem}), "
            f"so the database {database} cannot be opened"
        )
    if name == "SQLITE_READONLY":
        return ReadOnlyDatabaseError(
            f"the database file {database} is read-only ({driver_reason(exc)})"
        )
    return DatabaseUnavailableError(f"cannot open the database {database}: {driver_reason(exc)}")


def _why_unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, or None when one can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def storage_error(exc: OSError | SQLAlchemyError, url: str) -> StorageError:
    """The :class:`StorageError` a driver error raised while using ``url`` means."""
    if isinstance(exc, IntegrityError):
        return DuplicateRecordError(f"duplicate record: {driver_reason(exc)}")
    if isinstance(exc, OSError) or (
        isinstance(exc, DBAPIError) and (exc.connection_invalidated or is_unusable_file(exc))
    ):
        return unusable_database(exc, url)
    return StorageError(f"database error: {driver_reason(exc)}")


def driver_reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
