"""The SQL memory store: runs `memfold.backends.sql.memory_plans` on SQLite or PostgreSQL,
sync or async, with the thread store's driver and runner.

Examples:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "memories.db"
    >>> store = SQLMemoryStore(f"sqlite:///{path}", dimensions=2)
    >>> store.setup()
    4
    >>> _ = store.put(("t", "u"), "north", embedding=[0.0, 1.0])
    >>> [h.record.text for h in store.search(("t",), "north", k=1)]
    ['north']
    >>> store.close()
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import URL, Engine, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from memfold import memory_ops as ops
from memfold.backends.sql import memory_schema
from memfold.backends.sql.driver import Driver
from memfold.backends.sql.memory_plans import MemoryPlans
from memfold.backends.sql.memory_schema import build_memory_tables, memory_steps
from memfold.backends.sql.store import _driver, _Runner, _Statements
from memfold.backends.sql.tenancy import row_level_security_option
from memfold.backends.sql.tombstones import tombstone_place
from memfold.errors import InvalidInput
from memfold.memories import BaseMemoryStore
from memfold.ops import Op
from memfold.recall.embedders import Embedder
from memfold.retention import RetentionPolicy
from memfold.schema_steps import SchemaSteps
from memfold.stores import Capabilities

__all__ = ["SQLMemoryStore", "astored_dimensions", "stored_dimensions"]

T = TypeVar("T")


class SQLMemoryStore(BaseMemoryStore):
    """Long-term memories in one SQL table on SQLite or PostgreSQL (see
    `memfold.backends.sql.memory_schema`; `BaseMemoryStore` for the memory arguments).

    Args:
        url: ``sqlite:///path/to/file.db``, ``postgresql://user@host/db`` (psycopg 3, with
            the pgvector extension), or a SQLAlchemy ``Engine`` or ``AsyncEngine`` you own.
        async_engine: an ``AsyncEngine`` for the async API (made from ``url`` if omitted).
        schema: PostgreSQL schema holding the table (created by `setup`).
        table_prefix: prefix of every table name.
        busy_timeout_ms, pool_size, max_overflow, connect_timeout, prepared_statements: the
            driver options, as for the thread store.
        row_level_security: PostgreSQL only: set each transaction's tenant (its namespace's
            first label) for row-level security policies (see
            `memfold.backends.sql.tenancy`); also a URL option.
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
        embedder: Embedder | None = None,
        dimensions: int | None = None,
        dedupe_threshold: float | None = None,
        capacity: int | None = None,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        row_level_security: bool | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
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
        super().__init__(
            Capabilities(
                persistent=True,
                shared=True,
                transactions=True,
                full_text_search=True,
                ttl=True,
                vector_search=True,
            ),
            embedder=embedder,
            dimensions=dimensions,
            dedupe_threshold=dedupe_threshold,
            capacity=capacity,
            text_weight=text_weight,
            vector_weight=vector_weight,
            retention=retention,
        )
        if self.name == "postgresql" and self.dimensions is None:
            # An existing table knows its own: erase, prune and export open it by URL alone.
            runner, plan = _dimensions_reader(self._driver, schema, table_prefix)
            try:
                self.dimensions = runner._run(plan, write=False)
            finally:
                if self.dimensions is None:
                    self._driver.close()
            if self.dimensions is None:
                raise InvalidInput(
                    "a PostgreSQL memory store needs its vector length: pass dimensions=N or an "
                    "embedder that declares its dimensions (a table that exists has its own)"
                )
        self.tables = build_memory_tables(table_prefix, schema, self.dimensions)
        self._plans = MemoryPlans(self.tables, self.name)
        self._runner = _Runner(
            self._driver,
            _Statements(self._driver.statement_dialect, self._plans.prepared()),
            f"{self.name} memory store",
            rls,
        )
        self._schema = memory_steps(self._runner, self.tables)

    @property
    def engine(self) -> Engine:
        """The sync SQLAlchemy engine."""
        return self._driver.engine

    @property
    def tombstone_place(self) -> Hashable:
        """The tombstone table of this database and schema (shared by its store kinds)."""
        return tombstone_place(self.engine, self.tables.base.tombstones)

    @property
    def tenant_tables(self) -> tuple[Table, ...]:
        """The tables whose rows carry a tenant (for `memfold.backends.sql.tenancy.policies`)."""
        return (self.tables.memories, self.tables.base.tombstones)

    def execute(self, op: Op[T]) -> T:
        """Run one operation in one transaction (rolled back for a dry-run sweep)."""
        plans, runner = self._plans, self._runner
        tenant, dry_run = runner.tenant_of(op), isinstance(op, ops.SweepMemories) and op.dry_run
        result: T = runner._run(lambda: plans.plan(op), plans.writes(op), False, tenant, dry_run)
        return result

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation in one transaction on the async engine."""
        plans, runner = self._plans, self._runner
        tenant, dry_run = runner.tenant_of(op), isinstance(op, ops.SweepMemories) and op.dry_run
        result: T = await runner._arun(
            lambda: plans.plan(op), plans.writes(op), False, tenant, dry_run
        )
        return result

    def schema_steps(self) -> list[SchemaSteps]:
        """The memory table's steps."""
        return [self._schema]

    def purge_deleted(self) -> None:
        """SQLite: truncate the write-ahead log (see `memfold.erase`)."""
        self._runner.purge_deleted()

    async def apurge_deleted(self) -> None:
        """Async `purge_deleted`."""
        await self._runner.apurge_deleted()

    def close(self) -> None:
        """Close this store's connections and the engines it made."""
        self._driver.close()

    async def aclose(self) -> None:
        """Async `close`."""
        await self._driver.aclose()


def _dimensions_reader(
    driver: Driver, schema: str | None, table_prefix: str
) -> tuple[_Runner, Callable[[], Any]]:
    dialect = driver.engine.dialect
    tables = build_memory_tables(table_prefix, schema)
    statements = _Statements(driver.statement_dialect, [])
    runner = _Runner(driver, statements, f"{driver.name} memory store")
    return runner, lambda: memory_schema.stored_dimensions(tables, dialect)


def stored_dimensions(
    url: str, *, schema: str | None = None, table_prefix: str = "memfold_"
) -> int | None:
    """The vector length of the PostgreSQL memory table at ``url`` (None: it has none yet), so
    its schema can be inspected without knowing the embedder."""
    runner, plan = _dimensions_reader(_driver(url, None, schema, {}), schema, table_prefix)
    try:
        found: int | None = runner._run(plan, write=False)
        return found
    finally:
        runner.driver.close()


async def astored_dimensions(
    url: str, *, schema: str | None = None, table_prefix: str = "memfold_"
) -> int | None:
    """Async `stored_dimensions`."""
    runner, plan = _dimensions_reader(_driver(url, None, schema, {}), schema, table_prefix)
    try:
        found: int | None = await runner._arun(plan, write=False)
        return found
    finally:
        await runner.driver.aclose()
