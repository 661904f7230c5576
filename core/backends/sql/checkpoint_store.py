"""The SQL checkpoint store: runs `memfold.backends.sql.checkpoint_plans` on SQLite or
PostgreSQL, sync or async, with the thread store's driver and runner.

Examples:
    >>> import tempfile, pathlib
    >>> from memfold.checkpoints import Blob
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "checkpoints.db"
    >>> store = SQLCheckpointStore(f"sqlite:///{path}")
    >>> store.setup() == store.schema_steps()[0].status().latest
    True
    >>> store.put("t", "c1", Blob("json", b"{}"), versions={"x": 1},
    ...           values={"x": Blob("json", b"7")})
    >>> store.get("t").values["x"]
    Blob(tag='json', data=b'7')
    >>> store.close()
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import URL, ClauseElement, Dialect, Engine, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from memfold import checkpoint_ops as ops
from memfold.backends.sql.checkpoint_heads import Heads
from memfold.backends.sql.checkpoint_plans import CheckpointPlans
from memfold.backends.sql.checkpoint_schema import build_checkpoint_tables
from memfold.backends.sql.checkpoint_writes import PutDone
from memfold.backends.sql.migrations import CHECKPOINT_STEPS, SQLSchemaSteps
from memfold.backends.sql.store import _driver, _Runner, _Statements
from memfold.backends.sql.tenancy import row_level_security_option
from memfold.checkpoint_deltas import DeltaPolicy
from memfold.checkpoint_model import RetentionPolicy
from memfold.checkpoints import BaseCheckpointStore
from memfold.ops import Op
from memfold.schema_steps import SchemaSteps
from memfold.stores import Capabilities

__all__ = ["SQLCheckpointStore"]

T = TypeVar("T")


class _KeptStatements(_Statements):
    """Compiles a statement built after start-up once too: the plans keep every statement
    they build (one per query shape), so its id stays its own."""

    def __init__(self, dialect: Dialect, prepared: list[ClauseElement]) -> None:
        super().__init__(dialect, prepared)
        self._kept: list[ClauseElement] = []

    def bind(self, statement: ClauseElement, params: Any) -> tuple[str, Any, bool]:
        if id(statement) not in self._cache:
            self._cache[id(statement)] = self._compile(statement)
            self._kept.append(statement)
        return super().bind(statement, params)


class SQLCheckpointStore(BaseCheckpointStore):
    """Checkpoints in SQL tables on SQLite or PostgreSQL (see
    `memfold.backends.sql.checkpoint_schema` for the layout).

    Args:
        url: ``sqlite:///path/to/file.db``, ``postgresql://user@host/db`` (psycopg 3), or a
            SQLAlchemy ``Engine`` or ``AsyncEngine`` you own.
        async_engine: an ``AsyncEngine`` for the async API (made from ``url`` if omitted).
        schema: PostgreSQL schema holding the tables (created by `setup`).
        table_prefix: prefix of every table name.
        busy_timeout_ms: SQLite only: how long a writer waits for the lock (default 5000).
        pool_size, max_overflow, connect_timeout: PostgreSQL only, as for the thread store.
        delta_policy: when list values are stored whole (see `DeltaPolicy`).
        retention: what `sweep` removes when called without a policy.
        row_level_security: PostgreSQL only: set each transaction's tenant for row-level
            security policies (see `memfold.backends.sql.tenancy`); also a URL option.
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
        delta_policy: DeltaPolicy | None = None,
        retention: RetentionPolicy | None = None,
        row_level_security: bool | None = None,
    ) -> None:
        self.tables = build_checkpoint_tables(table_prefix, schema)
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
            },
            rls,
        )
        self.name = self._driver.name
        dialect = self._driver.engine.dialect
        self._plans = CheckpointPlans(self.tables, dialect)
        statements = _KeptStatements(dialect, self._plans.prepared)
        self._runner = _Runner(self._driver, statements, f"{self.name} checkpoint store", rls)
        self._schema = SQLSchemaSteps(
            self._runner, self.tables.base, self.tables, "checkpoints", CHECKPOINT_STEPS
        )
        self._heads = Heads()
        super().__init__(
            Capabilities(
                persistent=True, shared=True, transactions=True, ttl=True, effect_journal=True
            ),
            delta_policy=delta_policy,
            retention=retention,
        )

    @property
    def engine(self) -> Engine:
        """The sync SQLAlchemy engine."""
        return self._driver.engine

    @property
    def tenant_tables(self) -> tuple[Table, ...]:
        """The tables whose rows carry a tenant (for `memfold.backends.sql.tenancy.policies`)."""
        t = self.tables
        return (t.threads, t.checkpoints, t.values, t.writes, t.journal, t.base.tombstones)

    def execute(self, op: Op[T]) -> T:
        """Run one operation in one transaction (rolled back for a dry-run sweep)."""
        if isinstance(op, ops.PutCheckpoint):
            self._put(op)
            return None  # type: ignore[return-value]
        if isinstance(op, ops.PutCheckpointWrites):
            self._put_writes(op)
            return None  # type: ignore[return-value]
        plans, policy, runner = self._plans, self.delta_policy, self._runner
        if isinstance(op, ops.GetCheckpoint):
            stamp, head = self._heads.get(op.tenant, op.thread_id, op.namespace)
            found: T = runner._run(
                lambda: plans.get(op, stamp, head), False, False, runner.tenant_of(op)
            )
            return found
        dry_run = isinstance(op, ops.SweepCheckpoints) and op.dry_run
        result: T = runner._run(
            lambda: plans.plan(op, policy), plans.writes(op), plans.single_statement(op),
            runner.tenant_of(op), dry_run,
        )  # fmt: skip
        return result

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation in one transaction on the async engine."""
        if isinstance(op, ops.PutCheckpoint):
            await self._aput(op)
            return None  # type: ignore[return-value]
        if isinstance(op, ops.PutCheckpointWrites):
            await self._aput_writes(op)
            return None  # type: ignore[return-value]
        plans, policy, runner = self._plans, self.delta_policy, self._runner
        if isinstance(op, ops.GetCheckpoint):
            stamp, head = self._heads.get(op.tenant, op.thread_id, op.namespace)
            found: T = await runner._arun(
                lambda: plans.get(op, stamp, head), False, False, runner.tenant_of(op)
            )
            return found
        dry_run = isinstance(op, ops.SweepCheckpoints) and op.dry_run
        result: T = await runner._arun(
            lambda: plans.plan(op, policy), plans.writes(op), plans.single_statement(op),
            runner.tenant_of(op), dry_run,
        )  # fmt: skip
        return result

    # Puts and pending writes: the fast form first, the full one if it did not hold (see
    # `memfold.backends.sql.checkpoint_writes`).

    def _put(self, op: ops.PutCheckpoint) -> None:
        writes, runner, tenant = self._plans.puts, self._runner, self._runner.tenant_of(op)
        stamp, head = self._heads.get(op.tenant, op.thread_id, op.namespace)
        fast = writes.put_fast(op, self.delta_policy, stamp, head)
        if fast is not None and runner._run(fast.plan, True, writes.postgres, tenant):
            self._remember(op, fast.stamp, fast.head, True)
            return
        done: PutDone = runner._run(
            lambda: writes.put(op, self.delta_policy, head, stamp), True, False, tenant
        )
        self._remember(op, done.stamp, done.head, stamp is not None and done.seen == stamp)

    async def _aput(self, op: ops.PutCheckpoint) -> None:
        writes, runner, tenant = self._plans.puts, self._runner, self._runner.tenant_of(op)
        stamp, head = self._heads.get(op.tenant, op.thread_id, op.namespace)
        fast = writes.put_fast(op, self.delta_policy, stamp, head)
        if fast is not None and await runner._arun(fast.plan, True, writes.postgres, tenant):
            self._remember(op, fast.stamp, fast.head, True)
            return
        done: PutDone = await runner._arun(
            lambda: writes.put(op, self.delta_policy, head, stamp), True, False, tenant
        )
        self._remember(op, done.stamp, done.head, stamp is not None and done.seen == stamp)

    def _remember(self, op: ops.PutCheckpoint, stamp: int, head: Any, keep: bool) -> None:
        self._heads.remember(op.tenant, op.thread_id, op.namespace, stamp, head, keep)

    def _put_writes(self, op: ops.PutCheckpointWrites) -> None:
        writes, runner, tenant = self._plans.puts, self._runner, self._runner.tenant_of(op)
        fast, alone = writes.put_writes_fast(op)
        if not runner._run(fast, True, alone, tenant):
            runner._run(lambda: writes.put_writes(op), True, False, tenant)

    async def _aput_writes(self, op: ops.PutCheckpointWrites) -> None:
        writes, runner, tenant = self._plans.puts, self._runner, self._runner.tenant_of(op)
        fast, alone = writes.put_writes_fast(op)
        if not await runner._arun(fast, True, alone, tenant):
            await runner._arun(lambda: writes.put_writes(op), True, False, tenant)

    def schema_steps(self) -> list[SchemaSteps]:
        """The checkpoint tables' steps."""
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
