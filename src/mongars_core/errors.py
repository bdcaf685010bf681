"""The monGARS exception tree.

Every error monGARS raises on purpose derives from :class:`MongarsError`, so a
host application can catch one type. Third-party errors are translated where
they enter (the storage layer, a backend, a model loader)::

    MongarsError
    ├── ConfigurationError
    │   ├── MissingDependencyError        an optional extra is not installed
    │   └── InvalidSectionError           a settings Section declared wrongly (ValueError too)
    ├── PluginError
    │   ├── PluginLoadError               an entry point failed to import (strict mode)
    │   ├── HookValidationError           an implementation matches no spec
    │   ├── HookAbortedError              a hook raised KeyboardInterrupt, SystemExit...
    │   ├── HookStuckError                a hook still runs past an earlier deadline
    │   └── DuplicateRegistrationError    two plugins registered the same name
    ├── InvalidInputError                 ValueError too
    │   ├── EmptyMessageError
    │   ├── MessageTooLongError
    │   ├── InvalidUserIdError
    │   ├── IdempotencyKeyReusedError     the key came with a different message
    │   └── HistoryFormatError            an imported history file is malformed
    ├── NotFoundError                     LookupError too
    │   ├── UnknownUserError
    │   ├── UnknownBackendError
    │   ├── MemoryNotFoundError
    │   ├── ConversationNotFoundError
    │   └── TurnNotFoundError
    ├── BackendError                      an LLM backend failed
    │   ├── GenerationTimeoutError
    │   └── BackendUnavailableError       unreachable or overloaded; another may answer
    ├── ModelError
    │   ├── ModelNotFoundError            missing model file, fetch impossible
    │   └── CorruptModelError             a model file exists but cannot be read
    └── StorageError
        ├── DatabaseUnavailableError      the database URL cannot be reached
        ├── CorruptDatabaseError          the SQLite file is not a database, or damaged
        ├── ReadOnlyDatabaseError         the database file or its folder is not writable
        ├── ErasureIncompleteError        rows of a forgotten user remain (forget again)
        ├── UserErasedError               the user was forgotten while this was being written
        └── DuplicateRecordError          a record with the same key exists
            └── DuplicateTurnError        a turn with this idempotency key is stored
"""

from __future__ import annotations

from mongars_core import DISTRIBUTION


class MongarsError(Exception):
    """Root of every error monGARS raises on purpose."""


class ConfigurationError(MongarsError):
    """Settings are invalid or contradict each other."""


class MissingDependencyError(ConfigurationError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package} is not installed; install it with: pip install '{DISTRIBUTION}[{extra}]'"
        )


class InvalidSectionError(ConfigurationError, ValueError):
    """A :class:`~mongars_core.settings.Section` with a bad name or a model that is not a
    pydantic model class."""


class PluginError(MongarsError):
    """Something is wrong with a plugin."""


class PluginLoadError(PluginError):
    """A plugin's entry point could not be loaded."""


class HookValidationError(PluginError):
    """A plugin implements a hook that has no specification, or with wrong arguments."""


class HookAbortedError(PluginError):
    """A hook implementation raised ``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit`` or a ``CancelledError`` of its own: that plugin's failure,
    never a signal to the process."""


class HookStuckError(PluginError):
    """A plain hook implementation is still running after a call of it missed its
    deadline, so it is not called again until that call returns."""


class DuplicateRegistrationError(PluginError):
    """Two plugins registered something under the same name."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"{kind} {name!r} is registered twice: by plugin {first!r} and by plugin {second!r}"
        )


class InvalidInputError(MongarsError, ValueError):
    """The caller passed something monGARS cannot accept."""


class EmptyMessageError(InvalidInputError):
    """The message is empty or only whitespace."""


class MessageTooLongError(InvalidInputError):
    """The message exceeds the configured maximum length."""


class InvalidUserIdError(InvalidInputError):
    """A user id does not match the allowed pattern."""


class IdempotencyKeyReusedError(InvalidInputError):
    """An idempotency key already stored a turn with another message or session."""


class HistoryFormatError(InvalidInputError):
    """A history file to import is malformed; the message names the line or node."""


class UnsupportedConstraintError(InvalidInputError):
    """A request asks for constrained output that no endpoint of its role can produce."""


class NotFoundError(MongarsError, LookupError):
    """Something asked for by name or id does not exist."""


class UnknownUserError(NotFoundError):
    """No user with this id has ever talked to this assistant."""


class UnknownBackendError(NotFoundError):
    """No LLM backend is registered under this name."""


class MemoryNotFoundError(NotFoundError):
    """No memory with this id belongs to the user."""


class ConversationNotFoundError(NotFoundError):
    """No conversation with this session id belongs to the user."""


class TurnNotFoundError(NotFoundError):
    """No turn with this turn id belongs to the user."""


class BackendError(MongarsError):
    """An LLM backend failed to generate."""


class GenerationTimeoutError(BackendError):
    """An LLM backend did not answer within the deadline."""


class BackendUnavailableError(BackendError):
    """A backend cannot be reached, refused the call or is overloaded.

    Trying again (later, or on another endpoint) may succeed. ``retry_after``
    is the wait in seconds the backend asked for (HTTP ``Retry-After``), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelError(MongarsError):
    """A model could not be obtained or loaded."""


class ModelNotFoundError(ModelError):
    """A model file is missing and could not be fetched."""


class CorruptModelError(ModelError):
    """A model file exists but cannot be read."""


class StorageError(MongarsError):
    """The database failed."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached."""


class CorruptDatabaseError(StorageError):
    """The SQLite file is not a database, or its pages are damaged."""


class ReadOnlyDatabaseError(StorageError):
    """The database file, or the folder SQLite keeps its journal in, cannot be written."""


class ErasureIncompleteError(StorageError):
    """Rows of a user remain after forgetting them (a reply stored meanwhile, a plugin
    that kept its own): forgetting them again finishes the job."""


class UserErasedError(StorageError):
    """The user's data was erased ("forget me") while this write of it was under way
    (a reply, an upload, an import): nothing of it is stored."""


class DuplicateRecordError(StorageError):
    """A record with the same unique key already exists."""


class DuplicateTurnError(DuplicateRecordError):
    """The user already has a turn stored under this idempotency key."""
