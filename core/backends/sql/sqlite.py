"""SQLite through ``sqlite3``, for sync and async calls alike.

Files are opened in WAL mode with a busy timeout; writes take the lock up front
(``BEGIN IMMEDIATE``), so concurrent writers queue instead of failing half-way. Each thread
keeps one connection: a pool checkout per call would cost more than SQLite's own work. A thread
that ends leaves its connection to the next new one (LangGraph runs each saver call on a
short-lived thread), which keeps its statement and page caches. Since the driver keeps the
connections itself, the engine it makes pools none (``NullPool``): no cap on how many threads
call one store at once (a LangGraph fan-out runs dozens). An engine you pass keeps its own
pool, which then must hold a connection for each thread calling the store.

``sqlite3`` has no async I/O (``aiosqlite`` runs each statement on a thread of its own), so an
async operation runs whole, every statement of its transaction, on one of the driver's worker
threads: one hop between the event loop and a thread per operation, not one per statement. An
``AsyncEngine`` you pass (``sqlite+aiosqlite``) is used as given instead.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, cast

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from memfold.backends.sql.driver import Driver, Lease
from memfold.errors import BackendUnavailable, Conflict, InvalidInput, MemfoldError
from memfold.tombstones import erased

__all__ = ["SQLiteDriver"]

_WORKERS = 4
"""Worker threads (and so connections) per store for async calls: SQLite writes one at a time,
so more would only wait for the file's lock."""


_IDLE = 8
"""Connections of ended threads kept for new ones; more are closed."""


def _configure(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, a busy timeout, and no implicit transactions: memfold begins its own."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


def _autocommit(conn: PoolProxiedConnection) -> None:
    """Leave transactions to memfold's own ``BEGIN`` (``sqlite3`` would otherwise open one
    before a lone write and never commit it), remembering what an engine of yours set."""
    sqlite = cast(sqlite3.Connection, conn.driver_connection)
    conn.info.setdefault("memfold_isolation_level", sqlite.isolation_level)
    sqlite.isolation_level = None


def _give_back(conn: PoolProxiedConnection) -> None:
    """Close ``conn`` (back to your engine's pool, as it came)."""
    if conn.driver_connection is not None and "memfold_isolation_level" in conn.info:
        conn.driver_connection.isolation_level = conn.info.pop("memfold_isolation_level")
    conn.close()


class _Held:
    """A thread's connection, lent as one `Lease` to all of its operations; when the thread
    ends, its finalizer returns the connection."""

    __slots__ = ("__weakref__", "conn", "lease")

    def __init__(self, conn: PoolProxiedConnection) -> None:
        self.conn = conn
        self.lease = Lease(conn.driver_connection)


_DRIVERS: weakref.WeakSet[SQLiteDriver] = weakref.WeakSet()
"""The open drivers, which a forked child makes forget their parent's connections."""


def _after_fork() -> None:
    for driver in list(_DRIVERS):
        driver._forked()


os.register_at_fork(after_in_child=_after_fork)


class SQLiteDriver(Driver):
    """SQLite files: one connection per thread; async calls run on worker threads.

    Args:
        url: an ``sqlite:///path`` URL, or an ``Engine`` you own (then ``busy_timeout_ms`` and
            WAL are yours to set).
        async_engine: an ``AsyncEngine`` (``sqlite+aiosqlite``) for the async API, used as
            given: one connection per call (if omitted, async calls run on worker threads).
    """

    name = "sqlite"

    def __init__(
        self, url: URL | Engine, *, async_engine: AsyncEngine | None, busy_timeout_ms: int
    ) -> None:
        if isinstance(url, Engine):
            self.engine, self._owns_engine = url, False
        else:
            if not url.database or url.database == ":memory:":
                raise InvalidInput(
                    "an SQLite store needs a file path (sqlite:///path/to/memory.db); "
                    "for a store that lives only in this process use memory://"
                )
            self.engine = create_engine(url.set(drivername="sqlite"), poolclass=NullPool)
            self._owns_engine = True
            _configure(self.engine, busy_timeout_ms)
        self._aengine = async_engine
        self._workers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[PoolProxiedConnection] = []
        self._idle: list[PoolProxiedConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _DRIVERS.add(self)

    def begin(self, write: bool, single_statement: bool) -> str | None:
        # One statement is its own transaction, and a writing one takes the write lock (with
        # the busy timeout) before it reads anything.
        if single_statement:
            return None
        return "BEGIN IMMEDIATE" if write else "BEGIN"

    def _forked(self) -> None:
        """In a forked child, forget the parent's connections and worker threads."""
        if os.getpid() != self._pid:
            self._local, self._connections, self._pid = threading.local(), [], os.getpid()
            self._idle = []
            self._workers = None
            self.engine.dispose(close=False)

    def checkout(self) -> Lease:
        """This thread's connection, taken on first use from the ones ended threads left
        (or opened; anew in a forked child: the fork hook has the child forget the parent's)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or not held.conn.is_valid:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self.engine.raw_connection()
                _autocommit(conn)
                with self._lock:
                    self._connections.append(conn)
            held = self._local.held = _Held(conn)
            # A thread that ends (LangGraph runs saver calls on short-lived worker threads)
            # leaves its connection to the next new thread instead of leaking it.
            weakref.finalize(held, self._park, conn)
        return held.lease

    def _park(self, conn: PoolProxiedConnection) -> None:
        """Keep an ended thread's connection for the next new thread (at most `_IDLE`)."""
        with self._lock:
            sqlite = conn.driver_connection
            clean = conn.is_valid and sqlite is not None and not sqlite.in_transaction
            if clean and len(self._idle) < _IDLE and conn in self._connections:
                self._idle.append(conn)
                return
            if conn in self._connections:
                self._connections.remove(conn)
        _give_back(conn)

    def checkin(self, lease: Lease, dropped: BaseException | None) -> None:
        """The connection stays with its thread."""

    def workers(self) -> Executor | None:
        """The worker threads async calls run on (None with an ``AsyncEngine`` of yours)."""
        if self._aengine is not None:
            return None
        self._forked()
        workers = self._workers
        if workers is None:
            with self._lock:
                workers = self._workers
                if workers is None:
                    workers = self._workers = ThreadPoolExecutor(
                        _WORKERS, thread_name_prefix="memfold-sqlite"
                    )
        return workers

    async def acheckout(self) -> Lease:
        if self._aengine is None:  # pragma: no cover - the runner uses workers() then
            raise RuntimeError("async calls on this SQLite driver run on its worker threads")
        proxy = await self._aengine.raw_connection()
        return Lease(proxy.driver_connection, proxy)

    async def acheckin(self, lease: Lease, dropped: BaseException | None) -> None:
        if lease.proxy is not None:
            await greenlet_spawn(lease.proxy.close)

    async def acursor(self, connection: Any) -> Any:
        return await connection.cursor()

    def translate(self, error: BaseException, where: str) -> MemfoldError | None:
        if isinstance(error, PoolTimeout):
            return BackendUnavailable(
                f"{where}: every connection of your engine's pool is held (each thread calling "
                "the store keeps one): give the engine a pool as big as the threads "
                f"(pool_size=0 has no limit), or pass a URL instead. Driver said: {error}"
            )
        if isinstance(error, sqlite3.IntegrityError) and (found := erased(str(error))):
            return found
        if isinstance(error, sqlite3.IntegrityError):
            return Conflict(
                f"the write clashes with stored data in {where} (a message id already in the "
                f"thread?): use new ids. Driver said: {error}"
            )
        if isinstance(error, (sqlite3.InterfaceError, sqlite3.ProgrammingError)):
            return InvalidInput(f"{where} rejected a value: {error}")
        if not isinstance(error, sqlite3.Error):
            return None
        detail = str(error)
        if "no such table" in detail:
            hint = "the memfold schema is missing: call store.setup() once"
        elif "not a database" in detail or "malformed" in detail:
            hint = "the file is not a valid SQLite database (corrupted?): restore it from a backup"
        elif "locked" in detail or "busy" in detail:
            hint = "another writer held the lock past the busy timeout: retry, or raise it"
        else:
            hint = "check that the database is reachable and the path is writable"
        return BackendUnavailable(f"{where}: {hint}. Driver said: {detail}")

    def close(self) -> None:
        with self._lock:
            connections, self._connections, self._idle = self._connections, [], []
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=True)
        for conn in connections:
            _give_back(conn)
        self._local = threading.local()
        if self._owns_engine:
            self.engine.dispose()

    async def aclose(self) -> None:
        self.close()
