"""Every error memfold raises, in one tree.

```
MemfoldError
 ├── NotFound               (also a LookupError)
 ├── Conflict               (also a RuntimeError)
 │    ├── Erased            (the thread or namespace was erased: see `memfold.erase`)
 │    └── SchemaTooNew      (the stored schema is newer than this memfold)
 ├── UnsupportedOperation   (also a NotImplementedError)
 ├── InvalidInput           (also a ValueError)
 │    └── LimitExceeded     (a value is over one of the store's `memfold.limits.Limits`)
 ├── EncryptionError        (also a RuntimeError)
 └── BackendUnavailable     (also a ConnectionError)
```

Each leaf also subclasses the matching builtin, so code that already catches ``ValueError`` or
``LookupError`` keeps working. Every message says what to do instead.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "Conflict",
    "EncryptionError",
    "Erased",
    "InvalidInput",
    "LimitExceeded",
    "MemfoldError",
    "NotFound",
    "SchemaTooNew",
    "UnsupportedOperation",
]


class MemfoldError(Exception):
    """Root of every error memfold raises: ``except MemfoldError`` catches them all."""


class NotFound(MemfoldError, LookupError):
    """The thing asked for does not exist (a thread, a message id, a record)."""


class Conflict(MemfoldError, RuntimeError):
    """The write clashes with stored state (a duplicate id, a concurrent writer)."""


class Erased(Conflict):
    """The write goes to a tenant, thread or memory namespace that `memfold.erase` erased; its
    tombstone refuses writes until it expires or is lifted (`memfold.lift_erasure`)."""


class SchemaTooNew(Conflict):
    """The stored schema was made by a newer memfold: upgrade memfold (nothing was changed)."""


class UnsupportedOperation(MemfoldError, NotImplementedError):
    """The backend does not declare the capability this call needs."""


class InvalidInput(MemfoldError, ValueError):
    """An argument is malformed; nothing was stored."""


class LimitExceeded(InvalidInput):
    """A value is larger or deeper than the store's limits allow (see `memfold.limits`); the
    message names the limit and how to raise it, and nothing was stored."""


class EncryptionError(MemfoldError, RuntimeError):
    """Stored data cannot be decrypted: its key id is not in the store's keyring (or the store
    has none), the key under that id is not the one it was encrypted with, or the data was
    altered. The message names the key id needed."""


class BackendUnavailable(MemfoldError, ConnectionError):
    """The storage engine cannot be reached or its files are unreadable."""
