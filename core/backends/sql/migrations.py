"""Numbered schema steps, recorded with checksums in ``<prefix>schema_versions``.

A released step never changes: `migrate` refuses a database whose recorded checksum differs
from the step's, and a database newer than this memfold. Steps run inside the caller's write
transaction, so two processes running ``setup()`` at once apply each step exactly once: SQLite's
write lock is taken by ``BEGIN IMMEDIATE``, PostgreSQL's by ``pg_advisory_xact_lock`` (released
with the transaction, so it is safe behind PgBouncer in transaction mode).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Dialect, bindparam, insert, literal_column, select, text
from sqlalchemy.schema import CreateIndex, CreateTable

from memfold.backends.sql import words
from memfold.backends.sql.checkpoint_schema import CheckpointTables
from memfold.backends.sql.journal import journal_ddl
from memfold.backends.sql.plans import Plan
from memfold.backends.sql.schema import Tables
from memfold.errors import Conflict

__all__ = [
    "CHECKPOINT_STEPS",
    "COMPONENT",
    "STEPS",
    "Step",
    "lock_key",
    "migrate",
    "migrate_checkpoints",
]

COMPONENT = "threads"


@dataclass(frozen=True, slots=True)
class Step:
    """One schema change: its version number and the DDL it runs for a dialect."""

    version: int
    description: str
    ddl: Callable[[Any, Dialect], list[str]]

    def checksum(self, tables: Any, dialect: Dialect) -> str:
        """A hash of the step's DDL, so an edited released step is caught."""
        return hashlib.sha256("\n".join(self.ddl(tables, dialect)).encode()).hexdigest()


def _threads_and_messages(tables: Tables, dialect: Dialect) -> list[str]:
    ddl = []
    for table in (tables.threads, tables.messages):
        ddl.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        ddl += [
            str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        ]
    if dialect.name == "sqlite":
        # The FTS5 index is brought up to date by the next search, not by each append, so
        # appends stay cheap; `indexed_upto` is the last message seq the index holds.
        fts, m, state = tables.messages_fts, tables.messages.name, tables.fts_state
        ddl += [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5("
            f"search_text, content='{m}', content_rowid='seq', tokenize='unicode61')",
            f"CREATE TABLE IF NOT EXISTS {state} ("
            "id INTEGER PRIMARY KEY CHECK (id = 1), indexed_upto INTEGER NOT NULL)",
            f"INSERT OR IGNORE INTO {state} (id, indexed_upto) VALUES (1, 0)",
            f"CREATE TRIGGER IF NOT EXISTS {m}_fts_delete AFTER DELETE ON {m} "
            f"WHEN old.seq <= (SELECT indexed_upto FROM {state}) BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, search_text) "
            f"VALUES ('delete', old.seq, old.search_text); END",
            f"CREATE TRIGGER IF NOT EXISTS {m}_fts_update AFTER UPDATE OF search_text ON {m} "
            f"WHEN old.seq <= (SELECT indexed_upto FROM {state}) BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, search_text) "
            f"VALUES ('delete', old.seq, old.search_text); "
            f"INSERT INTO {fts}(rowid, search_text) VALUES (new.seq, new.search_text); END",
        ]
    if dialect.name == "postgresql":
        # A GIN index over the stored words (see `memfold.backends.sql.words`); searches use
        # the same expression, so the planner matches it to the index. New entries queue in a
        # pending list (cheap appends); a 256 kB list, not the default 4 MB, keeps the space
        # it leaves behind and the pause of merging it small.
        quote = dialect.identifier_preparer
        vector = words.tsvector(literal_column("search_text")).compile(dialect=dialect)
        ddl.append(
            f"CREATE INDEX IF NOT EXISTS {quote.quote(tables.messages_words)} "
            f"ON {quote.format_table(tables.messages)} USING gin ({vector}) "
            "WITH (gin_pending_list_limit = 256)"
        )
    return ddl


STEPS: tuple[Step, ...] = (
    Step(1, "threads and messages, with full-text search", _threads_and_messages),
)
"""Append-only: a new schema change is a new step at the end."""


def lock_key(tables: Tables) -> int:
    """The advisory lock (a signed 64-bit key) that serializes ``setup()`` of one schema."""
    name = f"memfold setup {tables.schema or ''}.{tables.prefix}".encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)


def _checkpoint_tables(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    ddl = []
    for table in (tables.threads, tables.checkpoints, tables.values, tables.writes):
        ddl.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        ddl += [
            str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        ]
    return ddl


CHECKPOINT_STEPS: tuple[Step, ...] = (
    Step(1, "checkpoint threads, checkpoints, values and writes", _checkpoint_tables),
    Step(2, "the effect journal", lambda tables, dialect: journal_ddl(tables.journal, dialect)),
)
"""The ``checkpoints`` component's steps; append-only like `STEPS`."""


def migrate(tables: Tables, dialect: Dialect) -> Plan:
    """Plan that applies the missing steps and returns the schema version afterwards."""
    return _migrate(tables, tables, dialect, COMPONENT, STEPS)


def migrate_checkpoints(tables: CheckpointTables, dialect: Dialect) -> Plan:
    """Plan that applies the missing ``checkpoints`` steps; returns that component's version."""
    return _migrate(tables.base, tables, dialect, "checkpoints", CHECKPOINT_STEPS)


def _migrate(
    tables: Tables, target: Any, dialect: Dialect, component: str, steps: tuple[Step, ...]
) -> Plan:
    v = tables.schema_versions
    if dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:key)").bindparams(
            bindparam("key", type_=BigInteger)
        )
        yield lock, {"key": lock_key(tables)}
        if tables.schema is not None:
            quoted = dialect.identifier_preparer.quote_schema(tables.schema)
            yield text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"), None
    yield CreateTable(v, if_not_exists=True), None
    result = yield (
        select(v.c.version, v.c.checksum).where(v.c.component == bindparam("component")),
        {"component": component},
    )
    applied = dict(result.rows)
    known = {step.version for step in steps}
    if newer := sorted(set(applied) - known):
        raise Conflict(
            f"the database has {component} schema version {newer[-1]}, newer than this memfold "
            f"knows ({max(known)}): upgrade memfold to use it"
        )
    for step in steps:
        checksum = step.checksum(target, dialect)
        if step.version in applied:
            if applied[step.version] != checksum:
                raise Conflict(
                    f"{component} schema step {step.version} recorded in the database differs "
                    "from this memfold's: the database was made by a modified memfold"
                )
            continue
        for statement in step.ddl(target, dialect):
            yield text(statement), None
        yield (
            insert(v),
            {
                "component": component,
                "version": step.version,
                "checksum": checksum,
                "applied_at": time.time(),
            },
        )
    return steps[-1].version
