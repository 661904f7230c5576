"""Tombstones on SQLite and PostgreSQL: one table per schema, read by triggers on every write.

``<prefix>tombstones`` holds one row per erased tenant, thread or user (see
`memfold.tombstones`), keyed by ``(tenant, kind, name)``, with ``expires_at`` in epoch seconds
(NULL: until lifted). The thread, checkpoint and memory components share it.

Triggers on the rows every write already touches refuse a write to what was erased, so the
check costs no extra statement or round trip:

- ``<prefix>threads``: every thread write inserts or updates its thread's row;
- ``<prefix>cp_threads``: a checkpoint put or put_writes upserts its thread's row (the lock);
- ``<prefix>cp_journal``: a journal record inserts its row;
- ``<prefix>memories``: every memory write inserts or updates its record's row (the tenant and
  user are the first two labels of its namespace key).

SQLite raises from the trigger with ``RAISE(ABORT, ...)``. PostgreSQL runs an ``AFTER`` row
trigger whose check, in PL/pgSQL, takes a fresh snapshot once the row is written and locked: a
write racing an erasure either commits first (and the erasure, which locks the same row before
deleting, removes it) or sees the committed tombstone and is refused. Either way the driver
turns the error into `memfold.errors.Erased`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Dialect,
    Engine,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateTable

from memfold.tombstones import ERASED_MARK, USER_KEY, LiftTombstones, Tombstone, lifted

if TYPE_CHECKING:  # plans.py imports this module
    from memfold.backends.sql.plans import Plan

__all__ = [
    "TombstonePlans",
    "namespace_guard_ddl",
    "nothing",
    "scrubbed",
    "thread_guard_ddl",
    "tombstone_ddl",
    "tombstone_place",
    "user_params",
    "user_where",
]


def tombstone_ddl(table: Table, dialect: Dialect) -> list[str]:
    """The tombstone table, if no other component made it yet."""
    return [str(CreateTable(table, if_not_exists=True).compile(dialect=dialect))]


def tombstone_place(engine: Engine, stones: Table) -> Hashable:
    """Where ``stones`` lives, equal for the stores that share it: the database (SQLite: the
    file; PostgreSQL: host, port and database name, as the URL gives them), schema and table."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database
        where: Hashable = (
            os.path.realpath(database) if database and database != ":memory:" else id(engine)
        )
    else:
        where = (url.host, url.port, url.database)
    return url.get_backend_name(), where, stones.schema, stones.name


def _live(stones: str, now: str) -> str:
    return f"({stones}.expires_at IS NULL OR {stones}.expires_at > {now})"


_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _sqlite_guards(
    table: str, name: str, tenant: str, match: str, what: str, stones: str
) -> list[str]:
    """``AFTER INSERT`` and ``AFTER UPDATE`` triggers on ``table`` raising when a live
    tombstone of tenant ``tenant`` (an expression over ``new``) matches ``match``."""
    found = (
        f"EXISTS (SELECT 1 FROM {stones} AS s WHERE s.tenant = {tenant} AND ({match}) "
        f"AND {_live('s', _SQLITE_NOW)})"
    )
    return [
        f"CREATE TRIGGER IF NOT EXISTS {name}_erased_{event.lower()} AFTER {event} ON {table} "
        f"WHEN {found} BEGIN SELECT RAISE(ABORT, '{ERASED_MARK}: {what}'); END"
        for event in ("INSERT", "UPDATE")
    ]


def lock_name(stones: Table) -> str:
    """What PostgreSQL's per-tenant erasure lock is named after (the tenant id follows)."""
    return f"memfold erase {stones.schema or ''}.{stones.name} "


def _postgres_guard(
    function: str,
    table: str,
    trigger: str,
    tenant: str,
    match: str,
    what: str,
    stones: str,
    lock: str,
) -> list[str]:
    """A PL/pgSQL function and the ``BEFORE INSERT OR UPDATE`` row trigger running it: it waits
    for an erasure of the tenant in progress (a shared advisory lock that erasure takes
    exclusively), then checks the tombstones with a fresh snapshot."""
    now = "extract(epoch FROM clock_timestamp())"
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"PERFORM pg_advisory_xact_lock_shared(hashtextextended('{lock}' || {tenant}, 0)); "
        f"IF EXISTS (SELECT 1 FROM {stones} AS s WHERE s.tenant = {tenant} "
        f"AND ({match}) AND {_live('s', now)}) THEN "
        f"RAISE EXCEPTION USING MESSAGE = '{ERASED_MARK}: ' || {what}; "
        "END IF; RETURN new; END $$",
        f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
        f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def thread_guard_ddl(guarded: Table, stones: Table, prefix: str, dialect: Dialect) -> list[str]:
    """Triggers refusing writes to ``guarded`` (a table with ``tenant`` and ``thread_id``
    columns) for an erased tenant or thread."""
    quote = dialect.identifier_preparer
    table, tombstones = quote.format_table(guarded), quote.format_table(stones)
    match = "(s.kind = 'thread' AND s.name = new.thread_id) OR (s.kind = 'tenant' AND s.name = '')"
    if dialect.name == "sqlite":
        return _sqlite_guards(table, guarded.name, "new.tenant", match, "the thread", tombstones)
    schema = "" if stones.schema is None else quote.quote_schema(stones.schema) + "."
    return _postgres_guard(
        f"{schema}{quote.quote(prefix + 'erased_thread')}",
        table,
        quote.quote(guarded.name + "_erased"),
        "new.tenant",
        match,
        "'thread ' || quote_literal(new.thread_id) || ' of tenant ' || quote_literal(new.tenant)",
        tombstones,
        lock_name(stones),
    )


def namespace_guard_ddl(guarded: Table, stones: Table, prefix: str, dialect: Dialect) -> list[str]:
    """Triggers refusing writes to ``guarded`` (a table with an ``ns`` namespace-key column)
    under an erased tenant or user."""
    quote = dialect.identifier_preparer
    table, tombstones = quote.format_table(guarded), quote.format_table(stones)
    if dialect.name == "sqlite":
        rest = "substr(new.ns, instr(new.ns, char(31)) + 1)"
        tenant = "substr(new.ns, 1, instr(new.ns, char(31)) - 1)"
        user = f"substr({rest}, 1, instr({rest}, char(31)) - 1)"
        match = f"(s.kind = 'tenant' AND s.name = '') OR (s.kind = 'user' AND s.name = {user})"
        return _sqlite_guards(
            table, guarded.name, tenant, match, "the memory namespace", tombstones
        )
    schema = "" if stones.schema is None else quote.quote_schema(stones.schema) + "."
    user = "split_part(new.ns, chr(31), 2)"
    return _postgres_guard(
        f"{schema}{quote.quote(prefix + 'erased_namespace')}",
        table,
        quote.quote(guarded.name + "_erased"),
        "split_part(new.ns, chr(31), 1)",
        f"(s.kind = 'tenant' AND s.name = '') OR (s.kind = 'user' AND s.name = {user})",
        "'memory namespace of tenant ' || quote_literal(split_part(new.ns, chr(31), 1)) || "
        f"' and user ' || quote_literal({user})",
        tombstones,
        lock_name(stones),
    )


def user_where(metadata: ColumnElement[str], dialect: str) -> ColumnElement[bool]:
    """Whether the JSON object in text column ``metadata`` has ``user_id`` equal to the JSON
    string of parameter ``user_json`` (see `user_params`; a number never equals a string)."""
    if dialect == "postgresql":
        found: ColumnElement[bool] = cast(metadata, JSONB)[USER_KEY] == cast(
            bindparam("user_json"), JSONB
        )
        return found
    return func.json_extract(metadata, f"$.{USER_KEY}") == func.json_extract(
        bindparam("user_json"), "$"
    )


def user_params(user_id: str) -> dict[str, str]:
    """The parameter `user_where` compares with."""
    return {"user_json": json.dumps(user_id)}


def scrubbed(deletes: Plan, fts: str | None) -> Plan:
    """SQLite: run ``deletes`` with ``secure_delete`` on (freed bytes are overwritten with
    zeros), then rewrite the FTS5 index ``fts`` (if given) so no segment keeps the deleted
    words."""
    previous = (yield text("PRAGMA secure_delete"), None).scalar()
    yield text("PRAGMA secure_delete = ON"), None
    result = yield from deletes
    if fts is not None:
        yield text(f"INSERT INTO {fts}({fts}) VALUES ('optimize')"), None
    yield text(f"PRAGMA secure_delete = {int(previous or 0)}"), None
    return result


def nothing() -> Plan:
    """A plan of no statements (for `scrubbed` to rewrite an index alone)."""
    return None
    yield  # a generator


class TombstonePlans:
    """Plans that place and lift tombstones (statements built once)."""

    def __init__(self, table: Table, dialect: str) -> None:
        self.table = t = table
        ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
        placed = ins(t).values(
            tenant=bindparam("tenant"),
            kind=bindparam("kind"),
            name=bindparam("name"),
            subject=bindparam("subject"),
            erased_at=bindparam("erased_at"),
            expires_at=bindparam("expires_at"),
        )
        self._place = placed.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.kind, t.c.name],
            set_={
                "subject": placed.excluded.subject,
                "erased_at": placed.excluded.erased_at,
                "expires_at": placed.excluded.expires_at,
            },
        )
        self._of_tenant = select(
            t.c.kind, t.c.name, t.c.subject, t.c.erased_at, t.c.expires_at
        ).where(t.c.tenant == bindparam("tenant"))
        self._lock = (
            select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("lock"), 0)))
            if dialect == "postgresql"
            else None
        )
        self._lock_name = lock_name(t)
        self._remove = delete(t).where(
            and_(
                t.c.tenant == bindparam("tenant"),
                t.c.kind == bindparam("kind"),
                t.c.name == bindparam("name"),
            )
        )

    @property
    def prepared(self) -> list[ClauseElement]:
        """The statements, for a runner to compile once."""
        return [
            self._place,
            self._of_tenant,
            self._remove,
            *([] if self._lock is None else [self._lock]),
        ]

    def place(self, tenant: str, stones: Iterable[Tombstone]) -> Plan:
        """Plan that waits for ``tenant``'s writes in progress to commit and holds off new ones
        until the transaction ends (PostgreSQL; SQLite has one writer anyway), then records
        ``stones`` (replacing those with the same key)."""
        if self._lock is not None:
            yield self._lock, {"lock": self._lock_name + tenant}
        rows = [
            {
                "tenant": s.tenant,
                "kind": s.kind,
                "name": s.name,
                "subject": s.subject,
                "erased_at": s.erased_at.timestamp(),
                "expires_at": None if s.expires_at is None else s.expires_at.timestamp(),
            }
            for s in stones
        ]
        if rows:
            yield self._place, rows

    def lift(self, op: LiftTombstones) -> Plan:
        """Plan that removes what ``op`` lifts; returns how many live tombstones went."""
        found = yield self._of_tenant, {"tenant": op.tenant}
        doomed = []
        for kind, name, subject, erased_at, expires_at in found.rows:
            stone = Tombstone(
                op.tenant,
                kind,
                name,
                subject,
                datetime.fromtimestamp(erased_at, UTC),
                None if expires_at is None else datetime.fromtimestamp(expires_at, UTC),
            )
            if lifted(stone, op):
                doomed.append(stone)
        if doomed:
            keys = [{"tenant": s.tenant, "kind": s.kind, "name": s.name} for s in doomed]
            yield self._remove, keys
        return sum(s.live(op.now) for s in doomed)
