"""The SQL thread store: runs `memfold.backends.sql.plans` on SQLite or PostgreSQL, sync or async.

SQLAlchemy declares the tables, builds and compiles the statements, and owns the connection
pools; the statements run on the pooled driver connection itself, each compiled once, because
SQLAlchemy's per-execution machinery would cost more than the database's own work on a hot
append. What differs between databases (engines, connections, transactions, errors) lives in a
`memfold.backends.sql.driver.Driver`: `memfold.backends.sql.sqlite` and
`memfold.backends.sql.postgres`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import URL, ClauseElement, Dialect, Engine, Table, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from memfold import ops
from memfold.backends.sql.driver import Driver
from memfold.backends.sql.migrations import STEPS, SQLSchemaSteps
from memfold.backends.sql.plans import Plan, Rows, ThreadPlans
from memfold.backends.sql.schema import build_tables
from memfold.backends.sql.server_functions import ServerFunctions
from memfold.backends.sql.tenancy import SET_TENANT, op_tenant, row_level_security_option
from memfold.backends.sql.tombstones import tombstone_place
from memfold.errors import BackendUnavailable, InvalidInput, MemfoldError
from memfold.retention import RetentionPolicy
from memfold.schema_steps import SchemaSteps
from memfold.stores import BaseThreadStore, Capabilities, check_flag

__all__ = ["SQLThreadStore"]

T = TypeVar("T")


class _Dropped(Exception):
    """The connection died under an operation; ``unknown`` if a write may have committed."""

    def __init__(self, error: BaseException, unknown: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.unknown = unknown


class _Rerun(Exception):
    """A server-side function failed inside an operation's transaction because it is gone or
    stale (see `memfold.backends.sql.server_functions`): the transaction rolled back, and the
    operation can run again, with the statement plain."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _translated(
    driver: Driver, where: str, exc: Exception
) -> tuple[Exception, BaseException] | None:
    """The `memfold.errors` error to raise for ``exc``, saying what to do, and its cause
    (None: raise ``exc`` itself)."""
    if isinstance(exc, MemfoldError):
        return None
    if isinstance(exc, _Dropped) and exc.unknown:
        return BackendUnavailable(
            f"{where}: the connection dropped while the write was committing, so it may "
            f"or may not be stored: check before retrying it. Driver said: {exc.error}"
        ), exc.error
    if isinstance(exc, _Dropped | _Rerun):
        error = exc.error
        return driver.translate(error, where) or BackendUnavailable(str(error)), error
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInput(f"text is not valid Unicode: {exc.reason}"), exc
    # SQLAlchemy wraps the errors raised while it opens a connection.
    error = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    translated = driver.translate(error, where)
    return None if translated is None else (translated, exc)


class _Statements:
    """SQL text and driver parameters for SQLAlchemy statements, compiled once per statement."""

    def __init__(self, dialect: Dialect, prepared: list[ClauseElement]) -> None:
        self.dialect = dialect
        self.positional = dialect.paramstyle in ("qmark", "numeric", "numeric_dollar", "format")
        self._cache = {id(s): self._compile(s) for s in prepared}

    def _compile(
        self, statement: ClauseElement
    ) -> tuple[str, tuple[str, ...], dict[str, Any], Callable[[dict[str, Any]], tuple[Any, ...]]]:
        compiled = statement.compile(dialect=self.dialect)
        if not isinstance(compiled, SQLCompiler):  # DDL: no parameters
            return compiled.string, (), {}, _no_values
        names = tuple(compiled.positiontup or ()) if self.positional else tuple(compiled.binds)
        values = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        return compiled.string, names, values, _values_of(names)

    def prepare(self, statement: ClauseElement) -> None:
        """Compile ``statement`` once now (it must live as long as this object)."""
        self._cache[id(statement)] = self._compile(statement)

    def bind(self, statement: ClauseElement, params: Any) -> tuple[str, Any, bool]:
        """``(sql, parameters, many)`` ready for ``cursor.execute`` or ``executemany``."""
        sql, names, values, pick = self._cache.get(id(statement)) or self._compile(statement)
        try:
            if isinstance(params, list):
                return sql, [self._args(names, values, pick, p) for p in params], True
            return sql, self._args(names, values, pick, params or {}), False
        except KeyError as exc:
            raise InvalidInput(f"statement parameter {exc} was not given") from exc

    def _args(
        self,
        names: tuple[str, ...],
        values: dict[str, Any],
        pick: Callable[[dict[str, Any]], tuple[Any, ...]],
        params: dict[str, Any],
    ) -> Any:
        if values:
            params = {**values, **params}
        if self.positional:
            return pick(params)
        return {name: params[name] for name in names}


def _no_values(params: dict[str, Any]) -> tuple[Any, ...]:
    return ()


def _values_of(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """What picks the values of ``names``, in order, out of a dict of parameters."""
    if not names:
        return _no_values
    if len(names) == 1:
        name = names[0]
        return lambda params: (params[name],)
    pick: Callable[[dict[str, Any]], tuple[Any, ...]] = itemgetter(*names)
    return pick


_SQLITE_OPTIONS: dict[str, float] = {"busy_timeout_ms": 5_000}
_POSTGRES_OPTIONS: dict[str, float] = {
    "pool_size": 5,
    "max_overflow": 10,
    "connect_timeout": 10,
    "prepared_statements": False,
}


def _options(backend: str, given: dict[str, Any]) -> dict[str, Any]:
    """The driver's options: its defaults, overridden by those given; another database's
    options are refused rather than ignored."""
    mine = _SQLITE_OPTIONS if backend == "sqlite" else _POSTGRES_OPTIONS
    options: dict[str, Any] = dict(mine)
    for name, value in given.items():
        if value is None:
            continue
        if name not in mine:
            raise InvalidInput(f"{name} is not an option of the {backend} backend")
        if name == "prepared_statements":
            options[name] = check_flag(value, name)
            continue
        kind = int | float if name == "connect_timeout" else int
        if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
            raise InvalidInput(f"{name} must be a non-negative number, got {value!r}")
        options[name] = value
    return options


def _driver(
    url: str | URL | Engine | AsyncEngine,
    async_engine: AsyncEngine | None,
    schema: str | None,
    given: dict[str, Any],
    row_level_security: bool = False,
) -> Driver:
    """The driver for ``url``'s database (imported only when used: psycopg is an extra)."""
    if isinstance(url, AsyncEngine):
        async_engine = async_engine or url
        url = url.url
    if isinstance(url, Engine):
        backend = url.dialect.name
    else:
        try:
            url = make_url(url)
        except Exception as exc:  # SQLAlchemy raises several types for a bad URL
            raise InvalidInput(f"not a database URL: {url!r}") from exc
        backend = url.get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise InvalidInput("SQLite has no schemas: use table_prefix to share one file")
        if row_level_security:
            raise InvalidInput(
                "row-level security is PostgreSQL's: SQLite has no policies (keep one SQLite "
                "file per tenant instead, or use postgresql://)"
            )
        from memfold.backends.sql.sqlite import SQLiteDriver

        return SQLiteDriver(url, async_engine=async_engine, **_options(backend, given))
    if backend in ("postgresql", "postgres"):
        from memfold.backends.sql.postgres import PostgresDriver

        return PostgresDriver(url, async_engine=async_engine, **_options("postgresql", given))
    shown = url if isinstance(url, Engine) else url.render_as_string(hide_password=True)
    raise InvalidInput(
        f"SQLThreadStore opens sqlite:/// and postgresql:// URLs (or engines), not {shown!r}"
    )


def _truncate_log() -> Plan:
    yield text("PRAGMA wal_checkpoint(TRUNCATE)"), None


class _Runner:
    """Runs plans in one transaction each on a driver's connections, sync or async (shared by
    the SQL thread, checkpoint and memory stores).

    With ``row_level_security``, an operation's transaction first sets its tenant (see
    `memfold.backends.sql.tenancy`); with ``functions``, the statements they route run as calls
    of server-side functions (see `memfold.backends.sql.server_functions`)."""

    def __init__(
        self,
        driver: Driver,
        statements: _Statements,
        where: str,
        row_level_security: bool = False,
        functions: ServerFunctions | None = None,
    ) -> None:
        self.driver = driver
        self.statements = statements
        self.where = where
        self.row_level_security = row_level_security
        self.functions = functions
        statements.prepare(SET_TENANT)

    def tenant_of(self, op: Any) -> str | None:
        """The tenant an operation's transaction sets (None: none to set)."""
        return op_tenant(op) if self.row_level_security else None

    def _run(
        self,
        plan: Callable[[], Plan],
        write: bool,
        alone: bool = False,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        """Run a fresh ``plan()`` in one transaction (that first sets ``tenant``, if given),
        once more if the connection dropped before anything could have been stored or a stale
        server-side function rolled it back; a ``dry_run`` rolls the transaction back."""
        try:  # not a context manager: this is the hot path of every operation
            try:
                return self._attempt(plan(), write, alone, tenant, dry_run)
            except _Dropped as dropped:
                if dropped.unknown or not self.driver.retries_dropped_connections:
                    raise
            except _Rerun:
                pass
            return self._attempt(plan(), write, alone, tenant, dry_run)
        except Exception as exc:
            found = _translated(self.driver, self.where, exc)
            if found is None:
                raise
            raise found[0] from found[1]

    def _attempt(
        self, plan: Plan, write: bool, alone: bool, tenant: str | None, dry_run: bool = False
    ) -> Any:
        driver = self.driver
        lease = driver.checkout()
        conn = lease.connection
        broken: BaseException | None = None
        # A tenant is set for one transaction, reads included (row-level security is
        # PostgreSQL's, where BEGIN opens one).
        begin = "BEGIN" if tenant is not None else driver.begin(write, alone)
        # A write outside BEGIN commits with its statement: a drop then leaves it unknown.
        unknown = write and not begin
        in_transaction = False
        cursor = None
        try:
            cursor = driver.cursor(conn)
            if self.functions is not None and self.functions.waiting:
                self._create_functions(self.functions, cursor, conn)
            if begin:
                cursor.execute(begin)
                in_transaction = True
            if tenant is not None:
                cursor.execute(*self.statements.bind(SET_TENANT, {"tenant": tenant})[:2])
            try:
                statement, params = next(plan)
                while True:
                    sql, args, many = self.statements.bind(statement, params)
                    if many:
                        cursor.executemany(sql, args)
                    elif self.functions is None:
                        cursor.execute(sql, args)
                    else:
                        self._execute_routed(self.functions, cursor, sql, args, in_transaction)
                    rows = cursor.fetchall() if driver.returns_rows(cursor) else []
                    statement, params = plan.send(Rows(rows, cursor.rowcount))
            except StopIteration as done:
                result = done.value
            if in_transaction:
                in_transaction, unknown = False, write and not dry_run
                cursor.execute("ROLLBACK" if dry_run else "COMMIT")
            return result
        except _Dropped as dropped:  # making functions, before the operation started
            broken = dropped.error
            raise
        except BaseException as exc:
            if driver.dropped(exc, conn):
                broken = exc
                raise _Dropped(exc, unknown) from exc
            if in_transaction and cursor is not None:
                try:
                    cursor.execute("ROLLBACK")
                except BaseException as rollback_failed:
                    broken = rollback_failed
            raise
        finally:
            try:
                if cursor is not None:
                    cursor.close()
            finally:
                driver.checkin(lease, broken)

    def _execute_routed(
        self, functions: ServerFunctions, cursor: Any, sql: str, args: Any, in_transaction: bool
    ) -> None:
        """Run ``sql`` as the call of its server-side function where it has one, or else plain,
        noting its result types (a later operation creates the function). A function dropped
        behind the store's back, or returning other types than ``sql`` now does, is made again
        the same way; ``sql`` then runs as it is, or, inside a transaction, the operation runs
        again (`_Rerun`)."""
        call = functions.call(sql)
        if call is not None:
            try:
                cursor.execute(call, args)
                return
            except Exception as exc:
                if not functions.forget(sql, exc):
                    raise
                if in_transaction:  # it rolls back, and the operation runs again
                    raise _Rerun(exc) from exc
        cursor.execute(sql, args)
        functions.ran(sql, cursor.description)

    async def _aexecute_routed(
        self, functions: ServerFunctions, cursor: Any, sql: str, args: Any, in_transaction: bool
    ) -> None:
        """Async `_execute_routed`."""
        call = functions.call(sql)
        if call is not None:
            try:
                await cursor.execute(call, args)
                return
            except Exception as exc:
                if not functions.forget(sql, exc):
                    raise
                if in_transaction:  # it rolls back, and the operation runs again
                    raise _Rerun(exc) from exc
        await cursor.execute(sql, args)
        functions.ran(sql, cursor.description)

    def _create_functions(self, functions: ServerFunctions, cursor: Any, conn: Any) -> None:
        """Create the server-side functions of the statements that ran plain, each in a
        transaction of its own on ``cursor``, before an operation starts; a statement whose
        function the database refuses runs as it is from now on. A connection dropped
        meanwhile leaves nothing of the operation stored, so it may run again."""
        for sql in tuple(functions.waiting):
            steps = functions.creation(sql)
            try:
                query, args = next(steps)
                while True:
                    cursor.execute(query, args)
                    rows = cursor.fetchall() if self.driver.returns_rows(cursor) else []
                    query, args = steps.send(rows)
            except StopIteration:
                continue
            except Exception as exc:
                if self.driver.dropped(exc, conn):  # the operation has not started
                    raise _Dropped(exc, unknown=False) from exc
                cursor.execute("ROLLBACK")
                functions.refuse(sql)

    async def _acreate_functions(self, functions: ServerFunctions, cursor: Any, conn: Any) -> None:
        """Async `_create_functions`."""
        for sql in tuple(functions.waiting):
            steps = functions.creation(sql)
            try:
                query, args = next(steps)
                while True:
                    await cursor.execute(query, args)
                    rows = await cursor.fetchall() if self.driver.returns_rows(cursor) else []
                    query, args = steps.send(rows)
            except StopIteration:
                continue
            except Exception as exc:
                if self.driver.dropped(exc, conn):  # the operation has not started
                    raise _Dropped(exc, unknown=False) from exc
                await cursor.execute("ROLLBACK")
                functions.refuse(sql)

    def purge_deleted(self) -> None:
        """SQLite: move the write-ahead log into the database and truncate it, so the log
        keeps no page images of deleted rows (best effort: a long reader elsewhere can keep
        it from finishing)."""
        if self.driver.name == "sqlite":
            self._run(_truncate_log, write=False, alone=True)

    async def apurge_deleted(self) -> None:
        """Async `purge_deleted`."""
        if self.driver.name == "sqlite":
            await self._arun(_truncate_log, write=False, alone=True)

    async def _arun(
        self,
        plan: Callable[[], Plan],
        write: bool,
        alone: bool = False,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        """Async `_run`: on a driver without async I/O (SQLite), the whole `_run` on one of
        its worker threads (a cancelled call may still finish there)."""
        workers = self.driver.workers()
        if workers is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                workers, self._run, plan, write, alone, tenant, dry_run
            )
        try:
            try:
                return await self._aattempt(plan(), write, alone, tenant, dry_run)
            except _Dropped as dropped:
                if dropped.unknown or not self.driver.retries_dropped_connections:
                    raise
            except _Rerun:
                pass
            return await self._aattempt(plan(), write, alone, tenant, dry_run)
        except Exception as exc:
            found = _translated(self.driver, self.where, exc)
            if found is None:
                raise
            raise found[0] from found[1]

    async def _aattempt(
        self, plan: Plan, write: bool, alone: bool, tenant: str | None, dry_run: bool = False
    ) -> Any:
        driver = self.driver
        lease = await driver.acheckout()
        conn = lease.connection
        broken: BaseException | None = None
        begin = "BEGIN" if tenant is not None else driver.begin(write, alone)
        # A write outside BEGIN commits with its statement: a drop then leaves it unknown.
        unknown = write and not begin
        in_transaction = False
        cursor = None
        try:
            cursor = await driver.acursor(conn)
            if self.functions is not None and self.functions.waiting:
                await self._acreate_functions(self.functions, cursor, conn)
            if begin:
                await cursor.execute(begin)
                in_transaction = True
            if tenant is not None:
                await cursor.execute(*self.statements.bind(SET_TENANT, {"tenant": tenant})[:2])
            try:
                statement, params = next(plan)
                while True:
                    sql, args, many = self.statements.bind(statement, params)
                    if many:
                        await cursor.executemany(sql, args)
                    elif self.functions is None:
                        await cursor.execute(sql, args)
                    else:
                        await self._aexecute_routed(
                            self.functions, cursor, sql, args, in_transaction
                        )
                    rows = await cursor.fetchall() if driver.returns_rows(cursor) else []
                    statement, params = plan.send(Rows(rows, cursor.rowcount))
            except StopIteration as done:
                result = done.value
            if in_transaction:
                in_transaction, unknown = False, write and not dry_run
                await cursor.execute("ROLLBACK" if dry_run else "COMMIT")
            return result
        except _Dropped as dropped:  # making functions, before the operation started
            broken = dropped.error
            raise
        except BaseException as exc:
            if driver.dropped(exc, conn):
                broken = exc
                raise _Dropped(exc, unknown) from exc
            if in_transaction and cursor is not None:
                try:
                    await cursor.execute("ROLLBACK")
                except BaseException as rollback_failed:
                    broken = rollback_failed
            raise
        finally:
            try:
                if cursor is not None:
                    await cursor.close()
            finally:
                await driver.acheckin(lease, broken)


class SQLThreadStore(BaseThreadStore):
    """Threads in SQL tables, one row per message, on SQLite or PostgreSQL.

    Args:
        url: ``sqlite:///path/to/file.db``, ``postgresql://user@host/db`` (psycopg 3), or a
            SQLAlchemy ``Engine`` or ``AsyncEngine`` you own (``postgresql+psycopg``).
        async_engine: an ``AsyncEngine`` to use for the async API (made from ``url`` if
            omitted: for PostgreSQL, one pool per event loop).
        schema: PostgreSQL schema holding the tables (created by `setup`); by default the
            connection's first ``search_path`` schema.
        table_prefix: prefix of every table name, so several stores can share one database.
        busy_timeout_ms: SQLite only: how long a writer waits for the lock before failing
            (default 5000).
        pool_size: PostgreSQL only: connections each pool keeps open (default 5).
        max_overflow: PostgreSQL only: connections a pool may open on top of ``pool_size``
            (default 10).
        connect_timeout: PostgreSQL only: seconds to wait for a new connection (default 10).
        prepared_statements: PostgreSQL only: have the server parse and plan each statement
            once per connection (default False: safe behind PgBouncer in transaction mode; see
            `memfold.backends.sql.postgres.PostgresDriver`); also a URL option.
        row_level_security: PostgreSQL only: set each transaction's tenant for row-level
            security policies (see `memfold.backends.sql.tenancy`); also
            ``?row_level_security=true`` in the URL.
        retention: what `sweep` removes when called without a policy (see
            `memfold.retention`).

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "memory.db"
        >>> store = SQLThreadStore(f"sqlite:///{path}")
        >>> store.setup()
        9
    """

    def __init__(
        self,
        url: str | URL | Engine | AsyncEngine,
        *,
        async_engine: AsyncEngine | None = None,
        schema: str | None = None,
        table_prefix: str = "memfold_",
        busy_timeout_ms: int | None = None,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        connect_timeout: float | None = None,
        prepared_statements: bool | None = None,
        row_level_security: bool | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        self.tables = build_tables(table_prefix, schema)
        url, rls = row_level_security_option(url, row_level_security)
        self._driver = _driver(
            url,
            async_engine,
            schema,
            {
                "busy_timeout_ms": busy_timeout_ms,
                "pool_size": pool_size,
                "max_overflow": max_overflow,
                "connect_timeout": connect_timeout,
                "prepared_statements": prepared_statements,
            },
            rls,
        )
        self.name = self._driver.name
        self._where = f"{self.name} store"
        self._plans = ThreadPlans(self.tables, self.name)
        self._statements = _Statements(self._driver.statement_dialect, self._plans.prepared)
        self._runner = _Runner(self._driver, self._statements, self._where, rls)
        self._schema = SQLSchemaSteps(self._runner, self.tables, self.tables, "threads", STEPS)
        super().__init__(
            Capabilities(
                persistent=True, shared=True, transactions=True, full_text_search=True, ttl=True
            ),
            retention=retention,
        )

    @property
    def engine(self) -> Engine:
        """The sync SQLAlchemy engine."""
        return self._driver.engine

    @property
    def tombstone_place(self) -> Hashable:
        """The tombstone table of this database and schema (shared by its store kinds)."""
        return tombstone_place(self.engine, self.tables.tombstones)

    @property
    def tenant_tables(self) -> tuple[Table, ...]:
        """The tables whose rows carry a tenant (for `memfold.backends.sql.tenancy.policies`)."""
        return (self.tables.threads, self.tables.messages, self.tables.tombstones)

    def _run(self, plan: Callable[[], Plan], write: bool, alone: bool = False) -> Any:
        return self._runner._run(plan, write, alone)

    async def _arun(self, plan: Callable[[], Plan], write: bool, alone: bool = False) -> Any:
        return await self._runner._arun(plan, write, alone)

    def execute(self, op: ops.Op[T]) -> T:
        """Run one operation in one transaction (rolled back for a dry-run sweep)."""
        plans, runner = self._plans, self._runner
        dry_run = isinstance(op, ops.SweepThreads) and op.dry_run
        result: T = runner._run(
            lambda: plans.plan(op), plans.writes(op), plans.single_statement(op),
            runner.tenant_of(op), dry_run,
        )  # fmt: skip
        return result

    async def aexecute(self, op: ops.Op[T]) -> T:
        """Run one operation in one transaction on the async engine."""
        plans, runner = self._plans, self._runner
        dry_run = isinstance(op, ops.SweepThreads) and op.dry_run
        result: T = await runner._arun(
            lambda: plans.plan(op), plans.writes(op), plans.single_statement(op),
            runner.tenant_of(op), dry_run,
        )  # fmt: skip
        return result

    def schema_steps(self) -> list[SchemaSteps]:
        """The thread tables' steps."""
        return [self._schema]

    def purge_deleted(self) -> None:
        """SQLite: truncate the write-ahead log (see `memfold.erase`)."""
        self._runner.purge_deleted()

    async def apurge_deleted(self) -> None:
        """Async `purge_deleted`."""
        await self._runner.apurge_deleted()

    def close(self) -> None:
        """Close this store's connections and the engines it made (an engine you passed in
        stays open)."""
        self._driver.close()

    async def aclose(self) -> None:
        """Async `close`."""
        await self._driver.aclose()
