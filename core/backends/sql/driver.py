"""What differs between the SQL databases memfold runs on, behind one small interface.

`memfold.backends.sql.store` runs the same plans on every database; a `Driver` supplies the
rest: the engines and their connections, how a transaction begins, which failures mean the
connection dropped, and how driver errors become `memfold.errors`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine
from sqlalchemy.pool import Pool, PoolProxiedConnection

from memfold.errors import MemfoldError

__all__ = ["Driver", "Lease"]


@dataclass(slots=True)
class Lease:
    """A driver connection lent to one operation, and what to undo when it goes back."""

    connection: Any
    """The DBAPI driver's own connection (``sqlite3``, ``aiosqlite`` or ``psycopg``)."""
    proxy: PoolProxiedConnection | None = None
    """The pool's handle, returned to the pool after the operation (None: kept per thread)."""
    pool: Pool | None = None
    """The pool the connection came from."""
    restore_autocommit: bool | None = None
    restore_prepare_threshold: tuple[int | None] | None = None
    """psycopg's ``prepare_threshold`` as the connection had it, when the driver changed it."""


class Driver(ABC):
    """One database's engines, connections, transaction statements and error mapping."""

    name: str
    """SQLAlchemy's dialect name, also the backend name in error messages."""
    engine: Engine
    """The sync engine (the store's statements are compiled for its dialect)."""
    retries_dropped_connections: bool = False
    """Whether an operation whose connection dropped is run once more on a new connection."""
    binary_results: bool = False
    """Whether statements fetch their results in the binary format, where the driver has one
    (PostgreSQL: ``bytea`` then arrives as its bytes, not as hex text to decode). For stores
    whose columns the driver loads alike in both formats (text, numbers, bytes)."""

    @abstractmethod
    def begin(self, write: bool, single_statement: bool) -> str | None:
        """The statement that opens a transaction (None: run each statement on its own)."""

    @abstractmethod
    def checkout(self) -> Lease:
        """A connection for one sync operation."""

    @abstractmethod
    def checkin(self, lease: Lease, dropped: BaseException | None) -> None:
        """Give the connection back; ``dropped`` is the error that broke it, if one did."""

    def workers(self) -> Executor | None:
        """Where async operations run whole on sync connections, one thread hop per operation
        (None: they use the async driver's connections)."""
        return None

    @abstractmethod
    async def acheckout(self) -> Lease:
        """A connection for one async operation, in the running event loop."""

    @abstractmethod
    async def acheckin(self, lease: Lease, dropped: BaseException | None) -> None:
        """Async `checkin`."""

    @property
    def statement_dialect(self) -> Dialect:
        """The dialect statements are compiled in for this driver's cursors (`cursor`)."""
        return self.engine.dialect

    def cursor(self, connection: Any) -> Any:
        """A cursor of a sync driver connection."""
        return connection.cursor()

    @abstractmethod
    async def acursor(self, connection: Any) -> Any:
        """A cursor of an async driver connection."""

    def returns_rows(self, cursor: Any) -> bool:
        """Whether the statement just run on ``cursor`` returned a result set."""
        return cursor.description is not None

    def dropped(self, error: BaseException, connection: Any) -> bool:
        """Whether ``error`` means the connection itself is gone (so a transaction never
        committed unless the error came from its COMMIT)."""
        return False

    @abstractmethod
    def translate(self, error: BaseException, where: str) -> MemfoldError | None:
        """The `memfold.errors` error for a driver error (None: not a database error)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connections and the engines the driver made."""

    @abstractmethod
    async def aclose(self) -> None:
        """Async `close`: also closes async connections cleanly."""
