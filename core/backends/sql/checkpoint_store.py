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

import asyncio
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from sqlalchemy import URL, ClauseElement, Dialect, Engine, Executable, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from memfold import checkpoint_ops as ops
from memfold.backends.sql.checkpoint_heads import Heads
from memfold.backends.sql.checkpoint_plans import CheckpointPlans
from memfold.backends.sql.checkpoint_schema import build_checkpoint_tables
from memfold.backends.sql.checkpoint_writes import PutDone
from memfold.backends.sql.migrations import CHECKPOINT_STEPS, SQLSchemaSteps
from memfold.backends.sql.server_functions import ServerFunctions
from memfold.backends.sql.store import _driver, _Runner, _Statements
from memfold.backends.sql.tenancy import row_level_security_option
from memfold.backends.sql.tombstones import tombstone_place
from memfold.checkpoint_deltas import DeltaPolicy
from memfold.checkpoint_model import RetentionPolicy
from memfold.checkpoints import BaseCheckpointStore
from memfold.errors import InvalidInput
from memfold.ops import Op
from memfold.schema_steps import SchemaSteps
from memfold.stores import Capabilities, check_flag
from memfold.tombstones import EraseSubject

__all__ = ["SQLCheckpointStore"]

T = TypeVar("T")

_WAIT_S = 2.0
"""How long a put waits at most for pending writes of its parent that this store is storing."""

_Key = tuple[str, str, str, str]


class _WritesInFlight:
    """The pending writes this store is storing, by checkpoint, so that a put waits for those
    of its parent: LangGraph stores a step's pending writes and the next checkpoint at the same
    time, and a put that comes second shares the writes' payload (see
    `memfold.backends.sql.checkpoint_writes`) instead of storing a copy. Sync puts wait for sync
    writes, async puts for async writes of their event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[_Key, list[tuple[Any, Any]]] = {}

    @contextmanager
    def storing(self, key: _Key, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
        """Mark the pending writes of ``key`` as being stored, by sync code or (``loop``) by
        async code on that event loop."""
        entry = (loop, threading.Event() if loop is None else asyncio.Event())
        with self._lock:
            self._events.setdefault(key, []).append(entry)
        try:
            yield
        finally:
            with self._lock:
                entries = self._events[key]
                entries.remove(entry)
                if not entries:
                    del self._events[key]
            entry[1].set()

    def _found(self, key: _Key, loop: Any) -> list[Any]:
        with self._lock:
            return [event for owner, event in self._events.get(key, ()) if owner is loop]

    def wait(self, key: _Key) -> None:
        """Wait (at most `_WAIT_S`) for the sync pending writes of ``key`` being stored."""
        for event in self._found(key, None):
            event.wait(_WAIT_S)

    async def await_(self, key: _Key) -> None:
        """Async `wait`, for async pending writes stored on the running event loop."""
        for event in self._found(key, asyncio.get_running_loop()):
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), _WAIT_S)


def _routed(statement: ClauseElement) -> str | None:
    """The kind of server-side function ``statement`` was built to run through (None: it runs
    as it is)."""
    options = statement.get_execution_options() if isinstance(statement, Executable) else {}
    kind: str | None = options.get("server_function")
    return kind


class _KeptStatements(_Statements):
    """Compiles a statement built after start-up once too: the plans keep every statement
    they build (one per query shape), so its id stays its own. A statement built with the
    execution option ``server_function`` (its function's kind: ``put``, ``get``, ``list``)
    is handed to ``functions`` (if any) to route."""

    def __init__(
        self,
        dialect: Dialect,
        prepared: list[ClauseElement],
        functions: ServerFunctions | None,
    ) -> None:
        super().__init__(dialect, prepared)
        self._kept: list[ClauseElement] = []
        self._functions = functions
        for statement in prepared:
            self._route(statement)

    def _route(self, statement: ClauseElement) -> None:
        kind = _routed(statement)
        if self._functions is not None and kind is not None:
            self._functions.register(self._cache[id(statement)][0], kind)

    def bind(self, statement: ClauseElement, params: Any) -> tuple[str, Any, bool]:
        if id(statement) not in self._cache:
            self._cache[id(statement)] = self._compile(statement)
            self._kept.append(statement)
            self._route(statement)
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
        pool_size, max_overflow, connect_timeout, prepared_statements: PostgreSQL only, as for
            the thread store.
        delta_policy: when list values are stored whole (see `DeltaPolicy`).
        retention: what `sweep` removes when called without a policy.
        row_level_security: PostgreSQL only: set each transaction's tenant for row-level
            security policies (see `memfold.backends.sql.tenancy`); also a URL option.
        server_functions: PostgreSQL only: run puts and reads as calls of functions the store
            creates in its schema (default True; see `memfold.backends.sql.server_functions`);
            not with ``prepared_statements``, which has the server plan them once already.
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
        delta_policy: DeltaPolicy | None = None,
        retention: RetentionPolicy | None = None,
        row_level_security: bool | None = None,
        server_functions: bool | None = None,
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
                "prepared_statements": prepared_statements,
            },
            rls,
        )
        self.name = self._driver.name
        # Text, numbers and bytes only: payloads come back as bytes, not hex text to decode.
        self._driver.binary_results = True
        dialect = self._driver.engine.dialect
        self._plans = CheckpointPlans(self.tables, dialect)
        functions = None
        if server_functions is not None:
            check_flag(server_functions, "server_functions")
            if self.name != "postgresql":
                raise InvalidInput(f"server_functions is not an option of the {self.name} backend")
        routed = server_functions is not False and self.name == "postgresql"
        if routed and getattr(self._driver, "prepare_threshold", 0) is None:
            quote = dialect.identifier_preparer
            functions = ServerFunctions(schema, table_prefix, quote)
        statements = _KeptStatements(
            self._driver.statement_dialect, self._plans.prepared, functions
        )
        self._runner = _Runner(
            self._driver, statements, f"{self.name} checkpoint store", rls, functions
        )
        self._schema = SQLSchemaSteps(
            self._runner, self.tables.base, self.tables, "checkpoints", CHECKPOINT_STEPS
        )
        self._heads = Heads()
        self._in_flight = _WritesInFlight()
        super().__init__(
            Capabilities(
                persistent=True, shared=True, transactions=True, ttl=True, effect_journal=True
            ),
            delta_policy=delta_policy,
            retention=retention,
        )

    reads_channel_history = True

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
        self._forget_erased(op)
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
        self._forget_erased(op)
        return result

    def _forget_erased(self, op: Op[Any]) -> None:
        """After an erasure, keep no copy in memory of what it erased (nor of anything else):
        no parsed row, no head's payload."""
        if isinstance(op, EraseSubject) and not op.dry_run:
            self._plans.parsed.clear()
            self._heads.clear()

    # Puts and pending writes: the fast form first, the full one if it did not hold (see
    # `memfold.backends.sql.checkpoint_writes`).

    def _put(self, op: ops.PutCheckpoint) -> None:
        if op.parent_id is not None:
            self._in_flight.wait((op.tenant, op.thread_id, op.namespace, op.parent_id))
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
        if op.parent_id is not None:
            await self._in_flight.await_((op.tenant, op.thread_id, op.namespace, op.parent_id))
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
        key = (op.tenant, op.thread_id, op.namespace, op.checkpoint_id)
        with self._in_flight.storing(key):
            fast, alone = writes.put_writes_fast(op)
            if not runner._run(fast, True, alone, tenant):
                runner._run(lambda: writes.put_writes(op), True, False, tenant)

    async def _aput_writes(self, op: ops.PutCheckpointWrites) -> None:
        writes, runner, tenant = self._plans.puts, self._runner, self._runner.tenant_of(op)
        key = (op.tenant, op.thread_id, op.namespace, op.checkpoint_id)
        with self._in_flight.storing(key, asyncio.get_running_loop()):
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
