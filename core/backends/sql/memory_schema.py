"""The SQL long-term memory table, declared once, and its numbered schema steps.

``<prefix>memories``: one row per record. ``ns`` is `memfold.memories.namespace_key` (byte
order, the "C" collation on PostgreSQL, so a namespace prefix is an index range); ``terms`` the
record's search terms, space-separated; ``value`` JSON (TEXT on SQLite, JSONB on PostgreSQL);
``embedding`` a float32 blob on SQLite, a pgvector ``vector(dimensions)`` on PostgreSQL (with an
HNSW index for cosine distance); times are epoch seconds; ``expires_at`` and ``created_at`` are
indexed for sweeps.

Full text: an FTS5 table over ``terms`` kept in step by triggers on SQLite; a GIN index over
``array_to_tsvector`` of the terms on PostgreSQL (see `memfold.backends.sql.words`). Both only
find candidates: the score is BM25 computed by `memfold.recall.text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateIndex, CreateTable

from memfold.backends.sql import words
from memfold.backends.sql.migrations import SQLSchemaSteps, Step, add_tenant_column
from memfold.backends.sql.plans import Plan
from memfold.backends.sql.schema import Tables, build_tables
from memfold.backends.sql.tombstones import namespace_guard_ddl, tombstone_ddl

if TYPE_CHECKING:
    from memfold.backends.sql.store import _Runner

__all__ = [
    "MEMORY_STEPS",
    "MemoryTables",
    "build_memory_tables",
    "memory_steps",
    "stored_dimensions",
]


@dataclass(frozen=True, slots=True)
class MemoryTables:
    """The memory table of one memfold schema (beside the thread tables)."""

    base: Tables
    memories: Table
    dimensions: int | None

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema holding the table (None: the connection's default)."""
        return self.base.schema

    @property
    def fts(self) -> str:
        """Name of the SQLite FTS5 table over ``terms``."""
        return f"{self.base.prefix}memories_fts"

    @property
    def version(self) -> str:
        """Name of the SQLite one-row table counting writes to the memories (bumped by triggers),
        which tells a process whether its cached vector matrix is still current."""
        return f"{self.base.prefix}memories_version"

    @property
    def words_index(self) -> str:
        """Name of the PostgreSQL GIN index over the terms."""
        return f"{self.base.prefix}memories_words"

    @property
    def vector_index(self) -> str:
        """Name of the PostgreSQL HNSW index over the embeddings."""
        return f"{self.base.prefix}memories_hnsw"


def build_memory_tables(
    prefix: str = "memfold_", schema: str | None = None, dimensions: int | None = None
) -> MemoryTables:
    """Declare the memory table (``dimensions`` sizes PostgreSQL's vector column)."""
    base = build_tables(prefix, schema)
    memories = _v1_table(base.metadata, prefix, dimensions)
    # The namespace's first label, for row-level security policies (schema step 2).
    memories.append_column(Column("tenant", String(512), nullable=False))
    # For max-age sweeps (schema step 4).
    Index(f"{prefix}memories_age", memories.c.created_at)
    return MemoryTables(base, memories, dimensions)


def _v1_table(metadata: MetaData, prefix: str, dimensions: int | None) -> Table:
    """The memory table as step 1 made it (frozen: its checksum depends on it)."""
    from pgvector.sqlalchemy import Vector  # type: ignore[import-untyped]

    vector: Any = LargeBinary().with_variant(Vector(dimensions), "postgresql")
    return Table(
        f"{prefix}memories",
        metadata,
        Column(
            "seq",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("ns", Text().with_variant(String(collation="C"), "postgresql"), nullable=False),
        Column("id", String(512), nullable=False),
        Column("text", Text, nullable=False),
        Column("value", Text().with_variant(JSONB(), "postgresql"), nullable=False),
        Column("terms", Text, nullable=False),
        Column("n_terms", Integer, nullable=False),
        Column("embedding", vector),
        Column("embedding_model", String(512)),
        Column("importance", Float, nullable=False),
        Column("ttl", Float),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("last_used_at", Float, nullable=False),
        Column("expires_at", Float),
        UniqueConstraint("ns", "id", name=f"{prefix}memories_key"),
        Index(f"{prefix}memories_order", "ns", "created_at", "id"),
        Index(f"{prefix}memories_expiry", "expires_at"),
        sqlite_autoincrement=True,
    )


def _memories(tables: MemoryTables, dialect: Dialect) -> list[str]:
    m = _v1_table(MetaData(schema=tables.schema), tables.base.prefix, tables.dimensions)
    ddl = [str(CreateTable(m, if_not_exists=True).compile(dialect=dialect))]
    ddl += [
        str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
        for index in sorted(m.indexes, key=lambda i: str(i.name))
    ]
    if dialect.name == "sqlite":
        fts, name = tables.fts, m.name
        ddl += [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(terms, content='{name}', "
            "content_rowid='seq', tokenize=\"unicode61 tokenchars '_'\")",
            f"CREATE TRIGGER IF NOT EXISTS {name}_fts_insert AFTER INSERT ON {name} BEGIN "
            f"INSERT INTO {fts}(rowid, terms) VALUES (new.seq, new.terms); END",
            f"CREATE TRIGGER IF NOT EXISTS {name}_fts_delete AFTER DELETE ON {name} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, terms) VALUES ('delete', old.seq, old.terms); END",
            f"CREATE TRIGGER IF NOT EXISTS {name}_fts_update AFTER UPDATE OF terms ON {name} "
            f"BEGIN INSERT INTO {fts}({fts}, rowid, terms) VALUES ('delete', old.seq, old.terms);"
            f" INSERT INTO {fts}(rowid, terms) VALUES (new.seq, new.terms); END",
            f"CREATE TABLE IF NOT EXISTS {tables.version} ("
            "id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
            f"INSERT OR IGNORE INTO {tables.version} (id, n) VALUES (1, 0)",
        ]
        bump = f"BEGIN UPDATE {tables.version} SET n = n + 1 WHERE id = 1; END"
        for event in ("INSERT", "DELETE", "UPDATE OF embedding"):
            trigger = f"{name}_version_{event.split()[0].lower()}"
            ddl.append(f"CREATE TRIGGER IF NOT EXISTS {trigger} AFTER {event} ON {name} {bump}")
    if dialect.name == "postgresql":
        quote = dialect.identifier_preparer
        table = quote.format_table(m)
        vector = words.tsvector(literal_column("terms")).compile(dialect=dialect)
        ddl += [
            f"CREATE INDEX IF NOT EXISTS {quote.quote(tables.words_index)} "
            f"ON {table} USING gin ({vector})",
            f"CREATE INDEX IF NOT EXISTS {quote.quote(tables.vector_index)} "
            f"ON {table} USING hnsw (embedding vector_cosine_ops)",
        ]
    return ddl


def _memory_tombstones(tables: MemoryTables, dialect: Dialect) -> list[str]:
    """Tombstones, and a trigger refusing memory writes under erased tenants and users."""
    stones = tables.base.tombstones
    return tombstone_ddl(stones, dialect) + namespace_guard_ddl(
        tables.memories, stones, tables.base.prefix, dialect
    )


def _tenants(tables: MemoryTables, dialect: Dialect) -> list[str]:
    """Each record carries its tenant (its namespace's first label), so a row-level security
    policy can test it."""
    table = dialect.identifier_preparer.format_table(tables.memories)
    if dialect.name == "sqlite":
        first_label = "substr(ns, 1, instr(ns, char(31)) - 1)"
    else:
        first_label = "split_part(ns, chr(31), 1)"
    return add_tenant_column(table, first_label, dialect)


def _ages(tables: MemoryTables, dialect: Dialect) -> list[str]:
    """Records indexed by creation time, for max-age sweeps."""
    age = next(i for i in tables.memories.indexes if i.name == f"{tables.base.prefix}memories_age")
    return [str(CreateIndex(age).compile(dialect=dialect))]


MEMORY_STEPS: tuple[Step, ...] = (
    Step(1, "long-term memories with full-text and vector indexes", _memories),
    Step(2, "tombstones refuse writes under erased tenants and users", _memory_tombstones),
    Step(3, "a tenant column, for row-level security", _tenants),
    Step(4, "records indexed by creation time, for retention sweeps", _ages),
)
"""The ``memories`` component's steps; append-only."""


def memory_steps(runner: _Runner, tables: MemoryTables) -> SQLSchemaSteps:
    """The ``memories`` steps on ``runner``'s database (PostgreSQL also needs pgvector)."""
    postgres = runner.driver.engine.dialect.name == "postgresql"
    preamble = ("CREATE EXTENSION IF NOT EXISTS vector",) if postgres else ()
    return SQLSchemaSteps(runner, tables.base, tables, "memories", MEMORY_STEPS, preamble)


def stored_dimensions(tables: MemoryTables, dialect: Dialect) -> Plan:
    """Plan that reads the vector length of an existing PostgreSQL memory table (None: there is
    no such table)."""
    name = dialect.identifier_preparer.format_table(tables.memories)
    found = yield (
        text(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(:name) "
            "AND attname = 'embedding' AND NOT attisdropped"
        ),
        {"name": name},
    )
    return found.scalar()
