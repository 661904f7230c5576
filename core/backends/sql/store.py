"""The SQL thread store: runs `memfold.backends.sql.plans` on a sync or an async engine.

SQLAlchemy declares the tables, builds and compiles the statements, and owns the connection
pools; the statements run on the pooled driver connection itself, each compiled once, because
SQLAlchemy's per-execution machinery would cost more than SQLite's own work on a hot append.

SQLite files are opened in WAL mode with a busy timeout; writes take the lock up front
(``BEGIN IMMEDIATE``), so concurrent writers queue instead of failing half-way.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import URL, ClauseElement, Dialect, Engine, create_engine, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

from memfold import ops
from memfold.backends.sql.migrations import migrate
from memfold.backends.sql.plans import Plan, Rows, ThreadPlans
from memfold.backends.sql.schema import build_tables
from memfold.errors import BackendUnavailable, Conflict, InvalidInput, MemfoldError
from memfold.stores import BaseThreadStore, Capabilities

__all__ = ["SQLThreadStore"]

T = TypeVar("T")


def _sqlite_urls(url: URL) -> tuple[URL, URL]:
    if not url.database or url.database == ":memory:":
        raise InvalidInput(
            "an SQLite store needs a file path (sqlite:///path/to/memory.db); "
            "for a store that lives only in this process use memory://"
        )
    return url.set(drivername="sqlite+pysqlite"), url.set(drivername="sqlite+aiosqlite")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, a busy timeout, and no implicit transactions: memfold begins its own."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """Turn driver errors into `memfold.errors`, saying what to do."""
    try:
        yield
    except MemfoldError:
        raise
    except sqlite3.IntegrityError as exc:
        raise Conflict(
            f"the write clashes with stored data in {where} (a message id already in the "
            f"thread?): use new ids. Driver said: {exc}"
        ) from exc
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"text is not valid Unicode: {exc.reason}") from exc
    except (sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
        raise InvalidInput(f"{where} rejected a value: {exc}") from exc
    except (DBAPIError, sqlite3.Error) as exc:
        detail = str(getattr(exc, "orig", exc))
        if "no such table" in detail:
            hint = "the memfold schema is missing: call store.setup() once"
        elif "not a database" in detail or "malformed" in detail:
            hint = "the file is not a valid SQLite database (corrupted?): restore it from a backup"
        elif "locked" in detail or "busy" in detail:
            hint = "another writer held the lock past the busy timeout: retry, or raise it"
        else:
            hint = "check that the database is reachable and the path is writable"
        raise BackendUnavailable(f"{where}: {hint}. Driver said: {detail}") from exc


class _Statements:
    """SQL text and driver parameters for SQLAlchemy statements, compiled once per statement."""

    def __init__(self, dialect: Dialect, prepared: list[ClauseElement]) -> None:
        self.dialect = dialect
        self.positional = dialect.paramstyle in ("qmark", "numeric", "format")
        self._cache = {id(s): self._compile(s) for s in prepared}

    def _compile(self, statement: ClauseElement) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        compiled = statement.compile(dialect=self.dialect)
        if not isinstance(compiled, SQLCompiler):  # DDL: no parameters
            return compiled.string, (), {}
        names = tuple(compiled.positiontup or ()) if self.positional else tuple(compiled.binds)
        values = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        return compiled.string, names, values

    def bind(self, statement: ClauseElement, params: Any) -> tuple[str, Any, bool]:
        """``(sql, parameters, many)`` ready for ``cursor.execute`` or ``executemany``."""
        sql, names, values = self._cache.get(id(statement)) or self._compile(statement)
        if isinstance(params, list):
            return sql, [self._args(names, values, p) for p in params], True
        return sql, self._args(names, values, params or {}), False

    def _args(self, names: tuple[str, ...], values: dict[str, Any], params: dict[str, Any]) -> Any:
        if values:
            params = {**values, **params}
        try:
            if self.positional:
                return tuple([params[name] for name in names])
            return {name: params[name] for name in names}
        except KeyError as exc:
            raise InvalidInput(f"statement parameter {exc} was not given") from exc


class SQLThreadStore(BaseThreadStore):
    """Threads in SQL tables, one row per message.

    Args:
        url: ``sqlite:///path/to/file.db``, or a SQLAlchemy ``Engine`` you own.
        async_engine: an ``AsyncEngine`` to use for the async API (made from ``url`` if omitted).
        table_prefix: prefix of every table name, so several stores can share one database.
        busy_timeout_ms: how long an SQLite writer waits for the lock before failing.
    """

    def __init__(
        self,
        url: str | URL | Engine,
        *,
        async_engine: AsyncEngine | None = None,
        table_prefix: str = "memfold_",
        busy_timeout_ms: int = 5_000,
    ) -> None:
        self.tables = build_tables(table_prefix)
        self._owns_engine = not isinstance(url, Engine)
        if isinstance(url, Engine):
            self._engine = url
            self._async_url = url.url.set(drivername="sqlite+aiosqlite")
        else:
            try:
                parsed = make_url(url)
            except Exception as exc:  # SQLAlchemy raises several types for a bad URL
                raise InvalidInput(f"not a database URL: {url!r}") from exc
            if parsed.get_backend_name() != "sqlite":
                raise InvalidInput(f"SQLThreadStore opens sqlite:/// URLs, not {url!r}")
            sync_url, self._async_url = _sqlite_urls(parsed)
            self._engine = create_engine(sync_url)
            _configure_sqlite(self._engine, busy_timeout_ms)
        self.name = self._engine.dialect.name
        self._busy_timeout_ms = busy_timeout_ms
        # Without a pool, async connections never outlive the event loop that opened them, so
        # one engine serves every loop (LlamaIndex's sync wrappers start a new loop per call).
        self._aengine = async_engine
        self._plans = ThreadPlans(self.tables, self.name)
        self._statements = _Statements(self._engine.dialect, self._plans.prepared)
        # One connection per thread: a pool checkout per call would cost more than the SQL.
        self._local = threading.local()
        self._connections: list[PoolProxiedConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        super().__init__(
            Capabilities(persistent=True, shared=True, transactions=True, full_text_search=True)
        )

    @property
    def engine(self) -> Engine:
        """The sync SQLAlchemy engine."""
        return self._engine

    def _async_engine(self) -> AsyncEngine:
        """The async engine, made on first use."""
        if self._aengine is None:
            self._aengine = create_async_engine(self._async_url, poolclass=NullPool)
            _configure_sqlite(self._aengine.sync_engine, self._busy_timeout_ms)
        return self._aengine

    def _connection(self) -> DBAPIConnection:
        """This thread's driver connection, opened on first use (and anew in a forked child)."""
        if os.getpid() != self._pid:
            self._local, self._connections, self._pid = threading.local(), [], os.getpid()
            self._engine.dispose(close=False)
        conn: PoolProxiedConnection | None = getattr(self._local, "conn", None)
        if conn is None or not conn.is_valid:
            conn = self._local.conn = self._engine.raw_connection()
            with self._lock:
                self._connections.append(conn)
        return conn.driver_connection  # type: ignore[return-value]

    def _run(self, plan: Plan, write: bool) -> Any:
        with _translated(f"{self.name} store"):
            conn = self._connection()
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                statement, params = next(plan)
                while True:
                    sql, args, many = self._statements.bind(statement, params)
                    if many:
                        cursor.executemany(sql, args)
                    else:
                        cursor.execute(sql, args)
                    rows = cursor.fetchall() if cursor.description else []
                    statement, params = plan.send(Rows(rows, cursor.rowcount))
            except StopIteration as done:
                cursor.execute("COMMIT")
                return done.value
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            finally:
                cursor.close()

    async def _arun(self, plan: Plan, write: bool) -> Any:
        with _translated(f"{self.name} store"):
            async with self._async_engine().connect() as sa_conn:
                conn: Any = (await sa_conn.get_raw_connection()).driver_connection
                await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    statement, params = next(plan)
                    while True:
                        sql, args, many = self._statements.bind(statement, params)
                        if many:
                            cursor = await conn.executemany(sql, args)
                        else:
                            cursor = await conn.execute(sql, args)
                        rows = await cursor.fetchall() if cursor.description else []
                        await cursor.close()
                        statement, params = plan.send(Rows(rows, cursor.rowcount))
                except StopIteration as done:
                    await conn.execute("COMMIT")
                    return done.value
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise

    def execute(self, op: ops.Op[T]) -> T:
        """Run one operation in one transaction."""
        result: T = self._run(self._plans.plan(op), self._plans.writes(op))
        return result

    async def aexecute(self, op: ops.Op[T]) -> T:
        """Run one operation in one transaction on the async engine."""
        result: T = await self._arun(self._plans.plan(op), self._plans.writes(op))
        return result

    def setup(self) -> int:
        """Create or upgrade the schema (idempotent); returns the schema version."""
        version: int = self._run(migrate(self.tables, self._engine.dialect), write=True)
        return version

    async def asetup(self) -> int:
        """Async `setup`."""
        version: int = await self._arun(migrate(self.tables, self._engine.dialect), write=True)
        return version

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def close(self) -> None:
        """Dispose of the engines this store made (an engine you passed in stays open)."""
        self._close_connections()
        if self._owns_engine:
            self._engine.dispose()

    async def aclose(self) -> None:
        """Async `close`."""
        self.close()
