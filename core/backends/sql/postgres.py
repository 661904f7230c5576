"""PostgreSQL through psycopg 3, sync and async, on SQLAlchemy's connection pools.

Safe behind PgBouncer in transaction mode: no session state outlives a transaction. Statements
are not prepared server-side (``prepare_threshold=None``) unless ``prepared_statements`` asks
for it, nothing is ``SET``, and setup's lock is ``pg_advisory_xact_lock``. Reads run as single
statements in autocommit; writes run between ``BEGIN`` and ``COMMIT``.

Pools are not pre-pinged (that would cost a round trip per call). A connection that turns out
dead (server restart, ``pg_terminate_backend``, an idle timeout) makes the pool drop every
connection as old as it, and the operation runs once more on a new one: safe, because the
failed attempt never reached COMMIT. A connection lost *during* COMMIT is reported, not retried,
since the write may or may not have been stored.

Needs the ``postgres`` extra: ``pip install 'memfold[postgres]'``.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import select
import threading
import weakref
from typing import Any

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.pq import ConnStatus, ExecStatus, Format, TransactionStatus
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the postgresql backend needs {exc.name}: pip install 'memfold[postgres]'"
    ) from exc
from sqlalchemy import URL, Dialect, Engine, create_engine, event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from memfold.backends.sql.driver import Driver, Lease
from memfold.errors import BackendUnavailable, Conflict, InvalidInput, MemfoldError
from memfold.tombstones import erased

__all__ = ["PostgresDriver", "psycopg_url"]

_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg")


def psycopg_url(url: URL) -> URL:
    """``url`` with SQLAlchemy's psycopg 3 driver, or `InvalidInput` for another driver."""
    if url.drivername not in _DRIVERS:
        raise InvalidInput(
            f"memfold talks to PostgreSQL through psycopg 3: use postgresql:// or "
            f"postgresql+psycopg:// URLs, not {url.drivername}://"
        )
    return url.set(drivername="postgresql+psycopg")


_REFUSED_URL = re.compile(r"invalid (URI query parameter|connection option|dsn)", re.I)
"""What libpq says of a URL it refuses before connecting (a client-side ProgrammingError)."""


class PostgresDriver(Driver):
    """PostgreSQL: a pool checkout per operation, per-event-loop pools for async calls.

    Args:
        url: a ``postgresql://`` URL, or an ``Engine`` (``postgresql+psycopg``) you own.
        async_engine: an ``AsyncEngine`` you own, used from its own event loop; when omitted,
            each event loop gets a pool of its own, made from the URL.
        pool_size: connections each pool memfold makes keeps open.
        max_overflow: connections such a pool may open on top of ``pool_size``.
        connect_timeout: seconds to wait for a new connection (unless the URL sets it).
        prepared_statements: prepare each statement server-side on a connection's first use
            of it (psycopg's ``prepare_threshold=0``), so the server parses and plans it once
            per connection. Not for PgBouncer in transaction mode before 1.21 (nor later ones
            without ``max_prepared_statements``), where a prepared statement outlives the
            transaction on a server connection another client gets next.
    """

    name = "postgresql"
    retries_dropped_connections = True

    def __init__(
        self,
        url: URL | Engine,
        *,
        async_engine: AsyncEngine | None,
        pool_size: int,
        max_overflow: int,
        connect_timeout: float,
        prepared_statements: bool = False,
    ) -> None:
        self.prepare_threshold = 0 if prepared_statements else None
        connect_args: dict[str, Any] = {"prepare_threshold": self.prepare_threshold}
        if isinstance(url, Engine):
            check_engine(url)
            self.engine, self._owns_engine = url, False
            self._url = url.url
        else:
            self._url = psycopg_url(url)
            if "connect_timeout" not in self._url.query:
                connect_args["connect_timeout"] = max(1, round(connect_timeout))
        self._engine_options: dict[str, Any] = {
            "isolation_level": "AUTOCOMMIT",
            "connect_args": connect_args,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
        }
        if not isinstance(url, Engine):
            self.engine, self._owns_engine = create_engine(self._url, **self._engine_options), True
        if async_engine is not None:
            check_engine(async_engine)
        self._user_aengine = async_engine
        self._aengines: dict[asyncio.AbstractEventLoop, AsyncEngine] = {}
        self._aconnections: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._numbered: Dialect | None = None

    def begin(self, write: bool, single_statement: bool) -> str | None:
        # READ COMMITTED gives a read no more inside BEGIN than outside it, and one statement
        # is atomic on its own: skip the round trips.
        return "BEGIN" if write and not single_statement else None

    # Sync connections: one pool checkout per operation.

    def checkout(self) -> Lease:
        if os.getpid() != self._pid:  # a forked child must not share its parent's sockets
            self._pid = os.getpid()
            self.engine.dispose(close=False)
        for _ in range(2):
            proxy = self.engine.raw_connection()
            lease = Lease(proxy.driver_connection, proxy, self.engine.pool)
            if _alive(lease.connection):
                break
            _invalidate(lease, ConnectionError("the server closed the connection"))
        conn: psycopg.Connection[Any] = lease.connection
        if conn.prepare_threshold != self.prepare_threshold:  # yours: restored at checkin
            lease.restore_prepare_threshold = (conn.prepare_threshold,)
            conn.prepare_threshold = self.prepare_threshold
        if not conn.autocommit:
            lease.restore_autocommit = False
            conn.autocommit = True
        return lease

    def checkin(self, lease: Lease, dropped: BaseException | None) -> None:
        if dropped is not None:
            _invalidate(lease, dropped)
            return
        conn: psycopg.Connection[Any] = lease.connection
        if lease.proxy is not None and conn.info.transaction_status != TransactionStatus.IDLE:
            lease.proxy.invalidate()  # interrupted mid-statement: its state is unknown
            return
        if lease.restore_prepare_threshold is not None:
            conn.prepare_threshold = lease.restore_prepare_threshold[0]
        if lease.restore_autocommit is not None:
            conn.autocommit = lease.restore_autocommit
        if lease.proxy is not None:
            lease.proxy.close()

    # Async connections: one pool per event loop (a pool's queue belongs to one loop).

    async def _async_engine(self) -> AsyncEngine:
        if self._user_aengine is not None:
            return self._user_aengine
        loop = asyncio.get_running_loop()
        engine = self._aengines.get(loop)
        if engine is not None:
            return engine
        with self._lock:
            stale = [(old, e) for old, e in self._aengines.items() if old.is_closed()]
            for old, _ in stale:
                del self._aengines[old]
            engine = self._aengines[loop] = create_async_engine(self._url, **self._engine_options)
        aconnections = self._aconnections

        def remember(dbapi_connection: Any, _record: Any) -> None:
            aconnections.add(dbapi_connection.driver_connection)

        event.listen(engine.sync_engine, "connect", remember)
        # psycopg's async connections are not tied to a loop, so a dead loop's pool can be
        # closed from this one.
        for _, old_engine in stale:
            await old_engine.dispose()
        return engine

    async def acheckout(self) -> Lease:
        engine = await self._async_engine()
        for _ in range(2):
            proxy = await engine.raw_connection()
            lease = Lease(proxy.driver_connection, proxy, engine.sync_engine.pool)
            if _alive(lease.connection):
                break
            closed = ConnectionError("the server closed the connection")
            await greenlet_spawn(_invalidate, lease, closed)
        conn: psycopg.AsyncConnection[Any] = lease.connection
        if conn.prepare_threshold != self.prepare_threshold:
            lease.restore_prepare_threshold = (conn.prepare_threshold,)
            conn.prepare_threshold = self.prepare_threshold
        if not conn.autocommit:
            lease.restore_autocommit = False
            await conn.set_autocommit(True)
        return lease

    async def acheckin(self, lease: Lease, dropped: BaseException | None) -> None:
        if dropped is not None:
            await greenlet_spawn(_invalidate, lease, dropped)
            return
        conn: psycopg.AsyncConnection[Any] = lease.connection
        if lease.proxy is not None and conn.info.transaction_status != TransactionStatus.IDLE:
            await greenlet_spawn(lease.proxy.invalidate)  # cancelled mid-statement
            return
        if lease.restore_prepare_threshold is not None:
            conn.prepare_threshold = lease.restore_prepare_threshold[0]
        if lease.restore_autocommit is not None:
            await conn.set_autocommit(lease.restore_autocommit)
        if lease.proxy is not None:
            await greenlet_spawn(lease.proxy.close)

    @property
    def statement_dialect(self) -> Dialect:
        """The engine's dialect with ``$1``-style parameters, for `cursor`'s raw cursors."""
        dialect = self._numbered
        if dialect is None:
            dialect = self._numbered = copy.copy(self.engine.dialect)
            dialect.paramstyle, dialect.positional = "numeric_dollar", True
        return dialect

    def cursor(self, connection: Any) -> Any:
        # A raw cursor takes the statement as compiled ($1, $2, ...); a plain one would parse
        # each statement for %(name)s anew (psycopg caches that only below 4 KB, and a put
        # with several value rows is longer).
        cursor = psycopg.RawCursor(connection)
        if self.binary_results:
            cursor.format = Format.BINARY
        return cursor

    async def acursor(self, connection: Any) -> Any:
        cursor = psycopg.AsyncRawCursor(connection)
        if self.binary_results:
            cursor.format = Format.BINARY
        return cursor

    def returns_rows(self, cursor: Any) -> bool:
        # Not ``cursor.description``: psycopg builds a new column description at each access.
        result = cursor.pgresult
        return result is not None and result.status == ExecStatus.TUPLES_OK

    def dropped(self, error: BaseException, connection: Any) -> bool:
        return isinstance(error, psycopg.Error) and bool(connection.closed)

    def translate(self, error: BaseException, where: str) -> MemfoldError | None:
        if isinstance(error, PoolTimeout):
            return BackendUnavailable(
                f"{where}: every pooled connection stayed busy past the pool timeout: raise "
                f"pool_size, or pass an engine with a bigger pool. Driver said: {error}"
            )
        if not isinstance(error, psycopg.Error):
            return None
        detail = str(error).strip()
        if isinstance(error, pg_errors.RaiseException) and (found := erased(detail)):
            return found
        if isinstance(error, pg_errors.IntegrityError):
            return Conflict(
                f"the write clashes with stored data in {where} (a message id already in the "
                f"thread?): use new ids. Driver said: {detail}"
            )
        if isinstance(error, pg_errors.TransactionRollback):
            return Conflict(
                f"a concurrent transaction clashed with this one in {where}: retry. "
                f"Driver said: {detail}"
            )
        if isinstance(error, psycopg.ProgrammingError) and _REFUSED_URL.search(detail):
            return InvalidInput(
                f"{where}: the driver refused the URL before reaching the server (memfold's own "
                f"query options are listed in docs/backends/postgresql.md). Driver said: {detail}"
            )
        if isinstance(error, pg_errors.DataError):
            return InvalidInput(f"{where} rejected a value: {detail}")
        if isinstance(error, (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)):
            hint = "the memfold schema is missing: call store.setup() once"
        elif isinstance(error, pg_errors.InsufficientPrivilege):
            hint = "the database user lacks a privilege: grant it, or use a schema it owns"
        elif isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            hint = (
                f"cannot use the server at {self._url.host or 'localhost'}:"
                f"{self._url.port or 5432} (database {self._url.database!r}): check that it "
                "is running, reachable and accepting connections, and that the URL is right"
            )
        else:
            hint = "the server refused the statement"
        return BackendUnavailable(f"{where}: {hint}. Driver said: {detail}")

    def close(self) -> None:
        with self._lock:
            engines, self._aengines = list(self._aengines.values()), {}
        for engine in engines:
            engine.sync_engine.dispose(close=False)
        # Async connections need no event loop to close: psycopg's close() only frees libpq.
        for conn in list(self._aconnections):
            if not conn.closed:
                conn.pgconn.finish()
        if self._owns_engine:
            self.engine.dispose()

    async def aclose(self) -> None:
        with self._lock:
            engines, self._aengines = list(self._aengines.values()), {}
        for engine in engines:
            await engine.dispose()
        self.close()


def _alive(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection still looks alive, checked without a round trip.

    An idle connection has nothing to read: anything waiting on its socket is the server
    ending the session (``pg_terminate_backend``, an idle timeout, a restart: a FATAL message,
    then end-of-file) or, rarely, reporting a changed setting. Either way, use a new one.
    """
    return conn.pgconn.status == ConnStatus.OK and not _readable(conn.pgconn.socket)


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


def _invalidate(lease: Lease, error: BaseException) -> None:
    """Close a dropped connection, and make its pool replace every connection as old as it
    (the server probably dropped them all), so the retry gets a live one."""
    if lease.pool is not None and lease.proxy is not None:
        lease.pool._invalidate(lease.proxy, error if isinstance(error, Exception) else None)


def check_engine(engine: Engine | AsyncEngine) -> None:
    """Refuse an engine memfold cannot run its statements on."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        raise InvalidInput(
            f"a PostgreSQL engine for memfold must use psycopg 3 (postgresql+psycopg://), "
            f"not {engine.dialect.name}+{engine.dialect.driver}"
        )
