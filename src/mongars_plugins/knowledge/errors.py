"""The knowledge plugin's errors, all :class:`~mongars_core.errors.MongarsError`::

MongarsError
├── InvalidInputError
│   ├── UnreadableDocumentError   bad PDF, binary, bad encoding, empty, unsupported type
│   │   └── DocumentTooLargeError  over knowledge.max_file_bytes or knowledge.max_chunks
│   ├── InvalidCollectionError    a collection name that is not allowed
│   └── SharedCollectionError     a shared collection written by someone not an administrator
└── NotFoundError
    └── DocumentNotFoundError     no document with this id that the user may see
"""

from __future__ import annotations

from mongars_core.errors import InvalidInputError, NotFoundError


class UnreadableDocumentError(InvalidInputError):
    """A file could not be turned into text; nothing of it was stored."""


class DocumentTooLargeError(UnreadableDocumentError):
    """A file over ``knowledge.max_file_bytes``, or one that makes more than
    ``knowledge.max_chunks`` chunks."""


class InvalidCollectionError(InvalidInputError):
    """A collection name is empty, too long or uses characters it may not."""


class SharedCollectionError(InvalidInputError):
    """Only administrators write shared collections."""


class DocumentNotFoundError(NotFoundError):
    """No document with this id that the user may see (another user's is not revealed)."""
