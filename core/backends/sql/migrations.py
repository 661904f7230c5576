"""The SQL schema steps of every store kind, recorded with checksums in ``<prefix>schema_versions``.

One table records the steps applied for each kind (its ``component``: ``threads``,
``checkpoints``, ``memories``; see `memfold.schema_steps`). A released step never changes:
`SQLSchemaSteps` refuses a database whose recorded checksum differs from the step's, and one
newer than this memfold (`memfold.errors.SchemaTooNew`). An upgrade runs in one write
transaction, so two processes upgrading at once apply each step exactly once: SQLite's write
lock is taken by ``BEGIN IMMEDIATE``, PostgreSQL's by ``pg_advisory_xact_lock`` (released with
the transaction, so it is safe behind PgBouncer in transaction mode). An up-to-date schema is
only read. A status (and so a dry run) only reads, and creates nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
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
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from memfold import schema_steps
from memfold.backends.sql import words
from memfold.backends.sql.checkpoint_schema import CheckpointTables
from memfold.backends.sql.journal import journal_ddl
from memfold.backends.sql.plans import Plan
from memfold.backends.sql.schema import UNKNOWN_FIRST_US, Tables
from memfold.backends.sql.tombstones import thread_guard_ddl, tombstone_ddl
from memfold.errors import Conflict
from memfold.schema_steps import SchemaStatus

if TYPE_CHECKING:
    from memfold.backends.sql.store import _Runner

__all__ = [
    "CHECKPOINT_STEPS",
    "STEPS",
    "SQLSchemaSteps",
    "Step",
    "add_tenant_column",
    "lock_key",
]


@dataclass(frozen=True, slots=True)
class Step(schema_steps.Step):
    """One schema change: its version number and the DDL it runs for a dialect (statements
    that move data are part of it too)."""

    ddl: Callable[[Any, Dialect], list[str]]

    def checksum(self, tables: Any, dialect: Dialect) -> str:
        """A hash of the step's DDL, so an edited released step is caught."""
        return hashlib.sha256("\n".join(self.ddl(tables, dialect)).encode()).hexdigest()


def _v1_tables(tables: Tables) -> tuple[Table, Table]:
    """The threads and messages tables as step 1 made them (frozen: its checksum depends on it)."""
    prefix, md = tables.prefix, MetaData(schema=tables.schema)
    threads = Table(
        f"{prefix}threads",
        md,
        Column("tenant", String(512), nullable=False),
        Column("thread_id", String(512), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("message_count", Integer, nullable=False),
        Column("metadata", Text, nullable=False),
        PrimaryKeyConstraint("tenant", "thread_id"),
        Index(f"{prefix}threads_recent", "tenant", "updated_at"),
    )
    messages = Table(
        f"{prefix}messages",
        md,
        Column(
            "seq",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("tenant", String(512), nullable=False),
        Column("thread_id", String(512), nullable=False),
        Column("message_id", String(512), nullable=False),
        Column("body", Text, nullable=False),
        Column("search_text", Text, nullable=False),
        UniqueConstraint("tenant", "thread_id", "message_id", name=f"{prefix}messages_id"),
        Index(f"{prefix}messages_order", "tenant", "thread_id", "seq"),
        sqlite_autoincrement=True,
    )
    return threads, messages


def _v2_tables(tables: Tables) -> tuple[Table, Table]:
    """The threads and messages tables as step 2 made them (frozen: its checksum depends on it)."""
    prefix, md = tables.prefix, MetaData(schema=tables.schema)
    key = BigInteger().with_variant(Integer(), "sqlite")
    threads = Table(
        f"{prefix}threads",
        md,
        Column("id", key, primary_key=True, autoincrement=True),
        Column("tenant", String(512), nullable=False),
        Column("thread_id", String(512), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("message_count", Integer, nullable=False),
        Column("metadata", Text, nullable=False),
        UniqueConstraint("tenant", "thread_id", name=f"{prefix}threads_key"),
        Index(f"{prefix}threads_recent", "tenant", "updated_at"),
    )
    messages = Table(
        f"{prefix}messages",
        md,
        Column("seq", key, primary_key=True, autoincrement=True),
        Column("thread", key, nullable=False),
        Column("created_us", BigInteger, nullable=True),
        Column("message_id", String(512), nullable=False),
        Column("body", Text, nullable=False),
        Column("search_text", Text, nullable=True),
        UniqueConstraint("thread", "message_id", name=f"{prefix}messages_id"),
        Index(f"{prefix}messages_order", "thread", "seq"),
    )
    return threads, messages


def _sorted(indexes: set[Index]) -> list[Index]:
    return sorted(indexes, key=lambda i: str(i.name))


def _create(tables: tuple[Table, ...], dialect: Dialect) -> list[str]:
    ddl = []
    for table in tables:
        ddl.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        ddl += [
            str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
            for index in _sorted(table.indexes)
        ]
    return ddl


def _threads_and_messages(tables: Tables, dialect: Dialect) -> list[str]:
    ddl = _create(_v1_tables(tables), dialect)
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


_INDEXED_TEXT = "coalesce({0}.search_text, json_extract({0}.body, '$.content'))"
"""The text SQLite's full-text index holds for a message row (``{0}``: old or new)."""


def _fts_update_trigger(tables: Tables) -> list[str]:
    """The trigger re-indexing an indexed message whose text changes."""
    fts, state, m = tables.messages_fts, tables.fts_state, tables.messages.name
    return [
        f"CREATE TRIGGER {m}_fts_update AFTER UPDATE OF body, search_text ON {m} "
        f"WHEN old.seq <= (SELECT indexed_upto FROM {state}) BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, search_text) "
        f"VALUES ('delete', old.seq, {_INDEXED_TEXT.format('old')}); "
        f"INSERT INTO {fts}(rowid, search_text) VALUES (new.seq, {_INDEXED_TEXT.format('new')});"
        " END"
    ]


def _thread_keys(tables: Tables, dialect: Dialect) -> list[str]:
    """Messages name their thread by a small integer key, not by two strings; bodies leave out
    the id and UTC times (columns hold them); both databases index text they can read from the
    body instead of a copy; SQLite appends one message in one statement."""
    quote = dialect.identifier_preparer
    threads, messages = quote.format_table(tables.threads), quote.format_table(tables.messages)
    schema = "" if tables.schema is None else quote.quote_schema(tables.schema) + "."
    old_threads = f"{schema}{quote.quote(tables.prefix + 'threads_v1')}"
    old_messages = f"{schema}{quote.quote(tables.prefix + 'messages_v1')}"
    ddl = []
    if dialect.name == "sqlite":
        m = tables.messages.name
        ddl += [
            f"DROP TRIGGER IF EXISTS {m}_fts_delete",
            f"DROP TRIGGER IF EXISTS {m}_fts_update",
            f"DROP TABLE IF EXISTS {tables.messages_fts}",
        ]
    ddl += [
        f"CREATE TABLE {old_threads} AS SELECT * FROM {threads}",
        f"CREATE TABLE {old_messages} AS SELECT * FROM {messages}",
        f"DROP TABLE {messages}",
        f"DROP TABLE {threads}",
        *_create(_v2_tables(tables), dialect),
        f"INSERT INTO {threads} "
        "(tenant, thread_id, created_at, updated_at, message_count, metadata) "
        "SELECT tenant, thread_id, created_at, updated_at, message_count, metadata "
        f"FROM {old_threads} ORDER BY created_at, tenant, thread_id",
    ]
    # Old bodies keep their id (a load sets it from the column anyway).
    search_text = "o.search_text"
    if dialect.name == "sqlite":
        search_text = (
            "CASE WHEN json_type(o.body, '$.content') = 'text' "
            "AND json_extract(o.body, '$.content') = o.search_text THEN NULL "
            "ELSE o.search_text END"
        )
    ddl += [
        f"INSERT INTO {messages} (seq, thread, message_id, body, search_text) "
        f"SELECT o.seq, t.id, o.message_id, o.body, {search_text} FROM {old_messages} AS o "
        f"JOIN {threads} AS t ON t.tenant = o.tenant AND t.thread_id = o.thread_id "
        "ORDER BY o.seq",
        f"DROP TABLE {old_messages}",
        f"DROP TABLE {old_threads}",
    ]
    if dialect.name == "postgresql":
        ddl.append(
            f"SELECT setval(pg_get_serial_sequence('{messages}', 'seq'), "
            f"coalesce((SELECT max(seq) FROM {messages}), 0) + 1, false)"
        )
        # The thread's messages in order are the primary key: one index instead of two.
        order = f"{schema}{quote.quote(tables.prefix + 'messages_order')}"
        ddl += [
            f"ALTER TABLE {messages} DROP CONSTRAINT {quote.quote(tables.messages.name + '_pkey')}",
            f"ALTER TABLE {messages} ADD PRIMARY KEY (thread, seq)",
            f"DROP INDEX {order}",
        ]
        vector = words.message_vector(
            literal_column("search_text"), literal_column("body")
        ).compile(dialect=dialect)
        ddl.append(
            f"CREATE INDEX IF NOT EXISTS {quote.quote(tables.messages_words)} "
            f"ON {messages} USING gin ({vector}) WITH (gin_pending_list_limit = 256)"
        )
        return ddl
    # SQLite: a contentless FTS5 index of each message's text (its search_text, else the
    # body's string content), caught up by the next search (step 9 rebuilds it).
    fts, state, m, view = tables.messages_fts, tables.fts_state, m, tables.append_view
    indexed = _INDEXED_TEXT
    ddl += [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(search_text, content='', tokenize='unicode61')",
        f"UPDATE {state} SET indexed_upto = 0",
        f"CREATE TRIGGER {m}_fts_delete AFTER DELETE ON {m} "
        f"WHEN old.seq <= (SELECT indexed_upto FROM {state}) BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, search_text) "
        f"VALUES ('delete', old.seq, {indexed.format('old')}); "
        f"UPDATE {state} SET indexed_upto = (SELECT coalesce(max(seq), 0) FROM {m}) "
        f"WHERE indexed_upto > (SELECT coalesce(max(seq), 0) FROM {m}); END",
        *_fts_update_trigger(tables),
        # An append of one message is one INSERT into this view: no BEGIN/COMMIT round trips.
        f"CREATE VIEW {view} (tenant, thread_id, now, message_id, body, created_us, "
        "search_text) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL",
        f"CREATE TRIGGER {view}_insert INSTEAD OF INSERT ON {view} BEGIN "
        f"INSERT INTO {threads} "
        "(tenant, thread_id, created_at, updated_at, message_count, metadata) "
        "VALUES (new.tenant, new.thread_id, new.now, new.now, 1, '{}') "
        "ON CONFLICT (tenant, thread_id) DO UPDATE SET updated_at = excluded.updated_at, "
        "message_count = message_count + 1; "
        f"INSERT INTO {m} (thread, message_id, body, created_us, search_text) VALUES ("
        f"(SELECT id FROM {threads} WHERE tenant = new.tenant AND thread_id = new.thread_id), "
        "new.message_id, new.body, new.created_us, new.search_text); END",
    ]
    return ddl


def _thread_tombstones(tables: Tables, dialect: Dialect) -> list[str]:
    """Tombstones, and a trigger refusing thread writes to erased tenants and threads."""
    return tombstone_ddl(tables.tombstones, dialect) + thread_guard_ddl(
        tables.threads, tables.tombstones, tables.prefix, dialect
    )


def add_tenant_column(table: str, tenant: str, dialect: Dialect) -> list[str]:
    """Add a ``tenant`` column (for row-level security policies) to ``table`` (quoted), filled
    from the SQL expression ``tenant`` over its rows."""
    if dialect.name == "sqlite":  # no ALTER COLUMN: the default stands in for NOT NULL's filler
        return [
            f"ALTER TABLE {table} ADD COLUMN tenant VARCHAR(512) NOT NULL DEFAULT ''",
            f"UPDATE {table} SET tenant = {tenant}",
        ]
    return [
        f"ALTER TABLE {table} ADD COLUMN tenant VARCHAR(512)",
        f"UPDATE {table} SET tenant = {tenant}",
        f"ALTER TABLE {table} ALTER COLUMN tenant SET NOT NULL",
    ]


def _message_tenants(tables: Tables, dialect: Dialect) -> list[str]:
    """Each message carries its thread's tenant, so a row-level security policy can test it."""
    quote = dialect.identifier_preparer
    threads, messages = quote.format_table(tables.threads), quote.format_table(tables.messages)
    of_thread = f"(SELECT t.tenant FROM {threads} AS t WHERE t.id = {messages}.thread)"
    ddl = add_tenant_column(messages, of_thread, dialect)
    if dialect.name == "sqlite":  # the one-statement append writes the tenant too
        m, view = tables.messages.name, tables.append_view
        ddl += [
            f"DROP TRIGGER {view}_insert",
            f"CREATE TRIGGER {view}_insert INSTEAD OF INSERT ON {view} BEGIN "
            f"INSERT INTO {threads} "
            "(tenant, thread_id, created_at, updated_at, message_count, metadata) "
            "VALUES (new.tenant, new.thread_id, new.now, new.now, 1, '{}') "
            "ON CONFLICT (tenant, thread_id) DO UPDATE SET updated_at = excluded.updated_at, "
            "message_count = message_count + 1; "
            f"INSERT INTO {m} (thread, tenant, message_id, body, created_us, search_text) "
            f"VALUES ((SELECT id FROM {threads} WHERE tenant = new.tenant "
            "AND thread_id = new.thread_id), new.tenant, new.message_id, new.body, "
            "new.created_us, new.search_text); END",
        ]
    return ddl


def _thread_ttls(tables: Tables, dialect: Dialect) -> list[str]:
    """Threads get a TTL of their own, and the indexes retention sweeps search: threads by
    message count, and threads with a TTL by when it is due."""
    quote = dialect.identifier_preparer
    threads = quote.format_table(tables.threads)
    ttl = tables.threads.c.ttl.type.compile(dialect=dialect)
    indexes = {str(index.name): index for index in tables.threads.indexes}
    return [
        f"ALTER TABLE {threads} ADD COLUMN ttl {ttl}",
        *(
            str(CreateIndex(indexes[tables.prefix + name]).compile(dialect=dialect))
            for name in ("threads_size", "threads_ttl")
        ),
    ]


def _last_messages(tables: Tables, dialect: Dialect) -> list[str]:
    """PostgreSQL reads a thread's last messages through a function that walks the primary key
    backwards: the planner cannot pick a plan that reads the whole thread to keep its last few.

    It would, as one statement: the thread's key comes from a subquery, so the planner guesses
    its row count, and with few rows guessed (no statistics yet, or many small threads) a scan
    of every row of the thread and a sort look as cheap as reading the index from the end. The
    function turns bitmap and sequential scans and sorts off for its own queries, and caches
    their plans per connection."""
    if dialect.name != "postgresql":
        return []
    quote = dialect.identifier_preparer
    threads, messages = quote.format_table(tables.threads), quote.format_table(tables.messages)
    newest = (
        f"RETURN QUERY SELECT m.message_id, m.body, m.created_us FROM {messages} AS m "
        "WHERE m.thread = k{} ORDER BY m.seq DESC LIMIT p_last;"
    )
    before = (
        f" AND m.seq < (SELECT b.seq FROM {messages} AS b "
        "WHERE b.thread = k AND b.message_id = p_before)"
    )
    return [
        f"CREATE OR REPLACE FUNCTION {tables.last_messages}(p_tenant varchar, "
        "p_thread varchar, p_before varchar, p_last bigint) "
        "RETURNS TABLE (message_id varchar, body text, created_us bigint) "
        "LANGUAGE plpgsql STABLE "
        "SET enable_bitmapscan = off SET enable_seqscan = off SET enable_sort = off "
        "AS $$ DECLARE k bigint; BEGIN "
        f"SELECT t.id INTO k FROM {threads} AS t "
        "WHERE t.tenant = p_tenant AND t.thread_id = p_thread; "
        "IF k IS NULL THEN RETURN; END IF; "
        f"IF p_before IS NULL THEN {newest.format('')} "
        f"ELSE {newest.format(before)} END IF; END $$"
    ]


def _sqlite_sizes(tables: Tables, dialect: Dialect) -> list[str]:
    """SQLite drops the index of threads by message count: every append moved the thread's
    entry in it, one more page written per append (about 4 us of 35), while a sweep of threads
    over ``keep_last`` reads the tenant's threads through ``threads_key`` instead."""
    if dialect.name != "sqlite":
        return []
    return [f"DROP INDEX IF EXISTS {tables.prefix}threads_size"]


def _first_times(tables: Tables, dialect: Dialect) -> list[str]:
    """Threads record when their first message was created (``first_us``), indexed by tenant,
    so a max-age sweep reads only the threads that start with a message older than its cut-off;
    existing threads are filled in from their first message (on PostgreSQL 10,000 threads at
    a time), and SQLite's one-statement append sets it for a thread's first message."""
    quote = dialect.identifier_preparer
    threads, messages = quote.format_table(tables.threads), quote.format_table(tables.messages)
    index = {str(i.name): i for i in tables.threads.indexes}[tables.prefix + "threads_first"]
    first = (
        f"(SELECT coalesce(m.created_us, {UNKNOWN_FIRST_US}) FROM {messages} AS m "
        f"WHERE m.thread = {threads}.id ORDER BY m.seq LIMIT 1)"
    )
    ddl = [f"ALTER TABLE {threads} ADD COLUMN first_us {BigInteger().compile(dialect=dialect)}"]
    if dialect.name == "postgresql":
        ddl.append(
            "DO $$ DECLARE lo bigint := 0; hi bigint; BEGIN LOOP "
            f"SELECT max(b.id) INTO hi FROM (SELECT id FROM {threads} "
            "WHERE id > lo ORDER BY id LIMIT 10000) AS b; "
            "EXIT WHEN hi IS NULL; "
            f"UPDATE {threads} SET first_us = {first} WHERE id > lo AND id <= hi; "
            "lo := hi; END LOOP; END $$"
        )
        return [*ddl, str(CreateIndex(index).compile(dialect=dialect))]
    m, view = tables.messages.name, tables.append_view
    return [
        *ddl,
        f"UPDATE {threads} SET first_us = {first}",
        str(CreateIndex(index).compile(dialect=dialect)),
        f"DROP TRIGGER {view}_insert",
        f"DROP VIEW {view}",
        f"CREATE VIEW {view} (tenant, thread_id, now, first_us, message_id, body, created_us, "
        "search_text) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
        f"CREATE TRIGGER {view}_insert INSTEAD OF INSERT ON {view} BEGIN "
        f"INSERT INTO {threads} "
        "(tenant, thread_id, created_at, updated_at, message_count, metadata, first_us) "
        "VALUES (new.tenant, new.thread_id, new.now, new.now, 1, '{}', new.first_us) "
        "ON CONFLICT (tenant, thread_id) DO UPDATE SET updated_at = excluded.updated_at, "
        "message_count = message_count + 1; "
        # Apart, and only for an empty thread: setting the indexed column in the upsert would
        # rewrite its index entry on every append.
        f"UPDATE {threads} SET first_us = new.first_us WHERE tenant = new.tenant "
        "AND thread_id = new.thread_id AND first_us IS NULL; "
        f"INSERT INTO {m} (thread, tenant, message_id, body, created_us, search_text) "
        f"VALUES ((SELECT id FROM {threads} WHERE tenant = new.tenant "
        "AND thread_id = new.thread_id), new.tenant, new.message_id, new.body, "
        "new.created_us, new.search_text); END",
    ]


def _search_index(tables: Tables, dialect: Dialect) -> list[str]:
    """SQLite's full-text index is rebuilt (the next search indexes every message again):

    - its words are those of `memfold.fulltext` on the other backends, as far as FTS5's
      ``unicode61`` allows: accents kept (``naive`` no longer finds ``naïve``) and ``_`` inside
      words (``foo`` no longer finds ``foo_bar``);
    - a delete lowers the index's mark to the highest message left whether or not the deleted
      rows were indexed. Step 2's trigger lowered it only for indexed rows, so deleting indexed
      and not yet indexed messages together left the mark above every row; SQLite reused those
      row numbers for new messages, which search then missed, and deleting one removed words the
      index never had ("database disk image is malformed")."""
    if dialect.name != "sqlite":
        return []
    fts, state, m = tables.messages_fts, tables.fts_state, tables.messages.name
    left = f"(SELECT coalesce(max(seq), 0) FROM {m})"
    return [
        f"DROP TRIGGER {m}_fts_delete",
        f"DROP TRIGGER {m}_fts_update",
        f"DROP TABLE {fts}",
        f"CREATE VIRTUAL TABLE {fts} USING fts5(search_text, content='', "
        "tokenize=\"unicode61 remove_diacritics 0 tokenchars '_'\")",
        f"UPDATE {state} SET indexed_upto = 0",
        f"CREATE TRIGGER {m}_fts_delete AFTER DELETE ON {m} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, search_text) "
        f"SELECT 'delete', old.seq, {_INDEXED_TEXT.format('old')} "
        f"WHERE old.seq <= (SELECT indexed_upto FROM {state}); "
        f"UPDATE {state} SET indexed_upto = {left} WHERE indexed_upto > {left}; END",
        *_fts_update_trigger(tables),
    ]


STEPS: tuple[Step, ...] = (
    Step(1, "threads and messages, with full-text search", _threads_and_messages),
    Step(2, "integer thread keys, ids out of bodies, one-statement appends", _thread_keys),
    Step(3, "tombstones refuse writes to erased tenants and threads", _thread_tombstones),
    Step(4, "a tenant column on messages, for row-level security", _message_tenants),
    Step(5, "thread TTLs, and indexes for retention sweeps", _thread_ttls),
    Step(6, "PostgreSQL reads a thread's last messages by its primary key", _last_messages),
    Step(7, "SQLite appends no longer move a thread in an index by size", _sqlite_sizes),
    Step(8, "threads indexed by their first message's time, for max-age sweeps", _first_times),
    Step(
        9,
        "SQLite's search index: the words of other backends, a mark every delete lowers",
        _search_index,
    ),
)
"""The ``threads`` steps. Append-only: a new schema change is a new step at the end."""


def lock_key(tables: Tables) -> int:
    """The advisory lock (a signed 64-bit key) that serializes ``setup()`` of one schema."""
    name = f"memfold setup {tables.schema or ''}.{tables.prefix}".encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)


def _v1_checkpoint_threads(tables: CheckpointTables) -> Table:
    """The checkpoint threads table as step 1 made it (frozen: its checksum depends on it)."""
    prefix, md = tables.base.prefix, MetaData(schema=tables.schema)
    return Table(
        f"{prefix}cp_threads",
        md,
        Column("tenant", String(512), nullable=False),
        Column("thread_id", String(512), nullable=False),
        Column("updated_us", BigInteger, nullable=False),
        Column("ttl", Float),
        Column("expires_us", Float),
        Column("holder", String(512)),
        Column("lease_until_us", BigInteger),
        Column("dirty", Integer, nullable=False),
        PrimaryKeyConstraint("tenant", "thread_id"),
        Index(f"{prefix}cp_threads_idle", "updated_us"),
        Index(f"{prefix}cp_threads_expiry", "expires_us"),
        Index(f"{prefix}cp_threads_dirty", "dirty"),
    )


def _v1_checkpoint_payloads(tables: CheckpointTables) -> tuple[Table, Table]:
    """The value and pending-write tables as step 1 made them (frozen, like the threads)."""
    prefix, md = tables.base.prefix, MetaData(schema=tables.schema)

    def key() -> list[Column[str]]:
        return [
            Column(name, String(512), nullable=False)
            for name in ("tenant", "thread_id", "namespace")
        ]

    values = Table(
        f"{prefix}cp_values",
        md,
        *key(),
        Column("channel", String(512), nullable=False),
        Column("version", String(512), nullable=False),
        Column("owner", String(512), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("digest", LargeBinary, nullable=False),
        Column("tag", String(512), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("length", Integer, nullable=False),
        Column("depth", Integer, nullable=False),
        Column("base_version", String(512)),
        Column("base_owner", String(512), nullable=False),
        Column("snapshot_version", String(512)),
        Column("snapshot_owner", String(512), nullable=False),
        Column("snapshot_length", Integer, nullable=False),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "channel", "version", "owner"),
        Index(
            f"{prefix}cp_values_chain",
            "tenant",
            "thread_id",
            "namespace",
            "channel",
            "snapshot_version",
            "snapshot_owner",
        ),
    )
    writes = Table(
        f"{prefix}cp_writes",
        md,
        *key(),
        Column("checkpoint_id", String(512), nullable=False),
        Column("task_id", String(512), nullable=False),
        Column("idx", Integer, nullable=False),
        Column("channel", String(512), nullable=False),
        Column("tag", String(512), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("task_path", Text, nullable=False),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "checkpoint_id", "task_id", "idx"),
    )
    return values, writes


def _v1_checkpoints(tables: CheckpointTables, md: MetaData | None = None) -> Table:
    """The checkpoints table as step 1 made it (frozen, like the threads)."""
    prefix, md = tables.base.prefix, md or MetaData(schema=tables.schema)
    return Table(
        f"{prefix}checkpoints",
        md,
        *(Column(name, String(512), nullable=False) for name in ("tenant", "thread_id")),
        Column("namespace", String(512), nullable=False),
        Column("checkpoint_id", String(512), nullable=False),
        Column("parent_id", String(512)),
        Column("created_us", BigInteger, nullable=False),
        Column("run_id", String(512)),
        Column("metadata", Text, nullable=False),
        Column("body_tag", String(512), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("versions", Text, nullable=False),
        Column("refs", Text, nullable=False),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "checkpoint_id"),
        Index(f"{prefix}checkpoints_run", "tenant", "run_id"),
        Index(f"{prefix}checkpoints_age", "created_us"),
        Index(f"{prefix}checkpoints_recent", "tenant", "checkpoint_id"),
    )


def _checkpoint_tables(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    ddl = []
    threads = _v1_checkpoint_threads(tables)
    values, writes = _v1_checkpoint_payloads(tables)
    for table in (threads, _v1_checkpoints(tables), values, writes):
        ddl.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        ddl += [
            str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        ]
    return ddl


def _checkpoint_tombstones(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Tombstones, and triggers refusing checkpoint and journal writes to erased tenants and
    threads."""
    stones, prefix = tables.base.tombstones, tables.base.prefix
    return (
        tombstone_ddl(stones, dialect)
        + thread_guard_ddl(tables.threads, stones, prefix, dialect)
        + thread_guard_ddl(tables.journal, stones, prefix, dialect)
    )


def _checkpoint_stamps(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Each checkpoint thread carries the stamp of its last put (see
    `memfold.backends.sql.checkpoint_heads`); a thread without one is read in full once."""
    threads = dialect.identifier_preparer.format_table(tables.threads)
    stamp = tables.threads.c.stamp.type.compile(dialect=dialect)
    return [f"ALTER TABLE {threads} ADD COLUMN stamp {stamp}"]


def _checkpoint_codecs(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Value rows and pending writes say how their payload is stored (NULL: as given)."""
    quote = dialect.identifier_preparer
    codec = tables.values.c.codec.type.compile(dialect=dialect)
    return [
        f"ALTER TABLE {quote.format_table(table)} ADD COLUMN codec {codec}"
        for table in (tables.values, tables.writes)
    ]


def _checkpoint_last_writes(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Each checkpoint thread records its last write exactly in an unindexed column
    (``last_us``), so that puts leave the indexed times alone until they lag (see
    `memfold.backends.sql.checkpoint_schema`)."""
    threads = dialect.identifier_preparer.format_table(tables.threads)
    return [
        f"ALTER TABLE {threads} ADD COLUMN last_us {BigInteger().compile(dialect=dialect)}",
        f"UPDATE {threads} SET last_us = updated_us",
    ]


def _checkpoint_links(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """A value row may hold the key of the pending write whose payload it shares instead of a
    copy of it (see `memfold.backends.sql.checkpoint_schema`)."""
    values = dialect.identifier_preparer.format_table(tables.values)
    text_type = String(512).compile(dialect=dialect)
    return [
        f"ALTER TABLE {values} ADD COLUMN link_checkpoint {text_type}",
        f"ALTER TABLE {values} ADD COLUMN link_task {text_type}",
        f"ALTER TABLE {values} ADD COLUMN link_idx {Integer().compile(dialect=dialect)}",
    ]


def _v2_journal(tables: CheckpointTables) -> Table:
    """The journal table as step 2 made it (frozen): without ``origin``."""
    journal = tables.journal
    return Table(
        journal.name,
        MetaData(schema=tables.schema),
        *(
            Column(c.name, c.type, nullable=c.nullable)
            for c in journal.columns
            if c.name != "origin"
        ),
        PrimaryKeyConstraint(*journal.primary_key.columns.keys()),
    )


def _journal_origins(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Each journal entry names the checkpoint its step ran from ("": recorded before, or not
    known), so a resumed run can tell a crashed attempt from a fork (`memfold.journal`)."""
    journal = dialect.identifier_preparer.format_table(tables.journal)
    origin = String(512).compile(dialect=dialect)
    return [f"ALTER TABLE {journal} ADD COLUMN origin {origin} NOT NULL DEFAULT ''"]


def _v8_checkpoint_writes(tables: CheckpointTables) -> Table:
    """The pending-write table as step 8 made it (frozen): stored in its primary key's order
    on SQLite (``WITHOUT ROWID``)."""
    _, writes = _v1_checkpoint_payloads(tables)
    return Table(
        writes.name,
        MetaData(schema=tables.schema),
        *(Column(c.name, c.type, nullable=c.nullable) for c in writes.columns),
        Column("codec", String(16)),
        PrimaryKeyConstraint(*writes.primary_key.columns.keys()),
        sqlite_with_rowid=False,
    )


def _checkpoint_compact(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Run ids are indexed only where a checkpoint has one; SQLite rebuilds the pending writes
    keyed by their primary key: one B-tree instead of a table and an index repeating its key
    (values and checkpoints keep their rowid: their secondary indexes would repeat the key)."""
    quote = dialect.identifier_preparer
    schema = "" if tables.schema is None else quote.quote_schema(tables.schema) + "."
    run = f"{tables.base.prefix}checkpoints_run"
    ddl = [
        f"DROP INDEX {schema}{quote.quote(run)}",
        f"CREATE INDEX {quote.quote(run)} ON {quote.format_table(tables.checkpoints)} "
        "(tenant, run_id) WHERE run_id IS NOT NULL",
    ]
    if dialect.name == "postgresql":
        return ddl
    writes = _v8_checkpoint_writes(tables)
    name, old = quote.format_table(writes), quote.quote(f"{writes.name}_v7")
    columns = ", ".join(quote.quote(c.name) for c in writes.columns)
    order = ", ".join(quote.quote(c.name) for c in writes.primary_key.columns)
    return [
        *ddl,
        f"ALTER TABLE {name} RENAME TO {old}",
        *_create((writes,), dialect),
        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {old} ORDER BY {order}",
        f"DROP TABLE {old}",
    ]


def _checkpoint_chain_index(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """PostgreSQL indexes by snapshot key only the value rows of delta chains, so a lookup by a
    row's own key has the primary key alone to use. Without statistics (a new table, or
    autovacuum off) the planner took the smaller chain index for it, matching four of the six
    key columns and filtering every row of the channel: a listing of 250 checkpoints of 20
    threads read 23,000 index entries (10 ms) where 270 would do (3.8 ms)."""
    if dialect.name != "postgresql":
        return []
    quote = dialect.identifier_preparer
    schema = "" if tables.schema is None else quote.quote_schema(tables.schema) + "."
    chain = f"{tables.base.prefix}cp_values_chain"
    return [
        f"DROP INDEX {schema}{quote.quote(chain)}",
        f"CREATE INDEX {quote.quote(chain)} ON {quote.format_table(tables.values)} (tenant, "
        "thread_id, namespace, channel, snapshot_version, snapshot_owner) "
        "WHERE snapshot_version IS NOT NULL",
    ]


def _checkpoint_body_codecs(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Checkpoint bodies may be compressed too (``body_codec``; NULL: stored as given)."""
    checkpoints = dialect.identifier_preparer.format_table(tables.checkpoints)
    codec = tables.checkpoints.c.body_codec.type.compile(dialect=dialect)
    return [f"ALTER TABLE {checkpoints} ADD COLUMN body_codec {codec}"]


_UUID_GROUPS = (8, 4, 4, 4, 12)
"""Hex digits per group of a canonical UUID's text."""
_BINARY_IDS = {
    "checkpoints": ("checkpoint_id", "parent_id"),
    "cp_values": ("link_checkpoint", "link_task"),
    "cp_writes": ("checkpoint_id", "task_id"),
}
"""The id columns step 11 makes binary, by table (after the prefix)."""


def _v11_checkpoint_tables(tables: CheckpointTables) -> tuple[Table, Table, Table]:
    """The checkpoints, values and pending-write tables as step 11 rebuilds them on SQLite
    (frozen): the tables of steps 1 to 10, their id columns binary."""
    prefix, md = tables.base.prefix, MetaData(schema=tables.schema)

    def binary(old: Table, *extra: Any, **options: Any) -> Table:
        ids = _BINARY_IDS[old.name.removeprefix(prefix)]
        columns = [
            Column(c.name, LargeBinary if c.name in ids else c.type, nullable=c.nullable)
            for c in old.columns
        ]
        key = PrimaryKeyConstraint(*old.primary_key.columns.keys())
        return Table(old.name, md, *columns, *extra, key, **options)

    checkpoints = binary(
        _v1_checkpoints(tables, MetaData()),
        Column("body_codec", String(16)),
        Index(
            f"{prefix}checkpoints_run", "tenant", "run_id", sqlite_where=text("run_id IS NOT NULL")
        ),
        Index(f"{prefix}checkpoints_age", "created_us"),
        Index(f"{prefix}checkpoints_recent", "tenant", "checkpoint_id"),
    )
    v1_values, _ = _v1_checkpoint_payloads(tables)
    values = binary(
        v1_values,
        Column("codec", String(16)),
        Column("link_checkpoint", LargeBinary),
        Column("link_task", LargeBinary),
        Column("link_idx", Integer),
        *(Index(i.name, *i.columns.keys()) for i in _sorted(v1_values.indexes)),
    )
    writes = binary(_v8_checkpoint_writes(tables), sqlite_with_rowid=False)
    return checkpoints, values, writes


def _checkpoint_binary_ids(tables: CheckpointTables, dialect: Dialect) -> list[str]:
    """Checkpoint and task ids are stored as bytes (see
    `memfold.backends.sql.checkpoint_rows.id_bytes`): a canonical UUID's 16 bytes, another
    id's UTF-8 and a NUL (two if one would make 16 bytes). PostgreSQL converts the columns in
    place; SQLite rebuilds the three tables, decoding hex through a temporary table of the 256
    bytes (its ``unhex`` is newer than the SQLite memfold supports)."""
    quote = dialect.identifier_preparer
    prefix = tables.base.prefix
    if dialect.name == "postgresql":
        uuid = "-".join(f"[0-9a-f]{{{n}}}" for n in _UUID_GROUPS)

        def altered(column: str) -> str:
            utf8 = f"convert_to({column}, 'UTF8')"
            return (
                f"ALTER COLUMN {column} TYPE bytea USING CASE WHEN {column} ~ '^{uuid}$' "
                f"THEN decode(replace({column}, '-', ''), 'hex') ELSE {utf8} || CASE WHEN "
                f"octet_length({utf8}) = 15 THEN decode('0000', 'hex') ELSE decode('00', 'hex') "
                "END END"
            )

        return [
            f"ALTER TABLE {quote.format_table(table)} "
            + ", ".join(altered(c) for c in _BINARY_IDS[table.name.removeprefix(prefix)])
            for table in (tables.checkpoints, tables.values, tables.writes)
        ]
    hexes = quote.quote(f"{prefix}id_hex")
    pattern = "-".join("[0-9a-f]" * n for n in _UUID_GROUPS)
    starts = (1, 3, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 29, 31, 33, 35)  # each byte's hex

    def converted(column: str) -> str:
        octets = " || ".join(
            f"(SELECT b FROM temp.{hexes} WHERE h = substr({column}, {i}, 2))" for i in starts
        )
        text_id = f"CAST({column} AS BLOB)"
        return (
            f"CASE WHEN {column} GLOB '{pattern}' THEN CAST({octets} AS BLOB) ELSE "
            f"CAST({text_id} || CASE WHEN length({text_id}) = 15 THEN x'0000' ELSE x'00' END "
            "AS BLOB) END"
        )

    ddl = [
        f"CREATE TEMP TABLE {hexes} (h TEXT PRIMARY KEY, b BLOB NOT NULL) WITHOUT ROWID",
        f"INSERT INTO temp.{hexes} (h, b) VALUES "
        + ", ".join(f"('{i:02x}', x'{i:02x}')" for i in range(256)),
    ]
    for table in _v11_checkpoint_tables(tables):
        ids = _BINARY_IDS[table.name.removeprefix(prefix)]
        name, old = quote.format_table(table), quote.quote(f"{table.name}_v10")
        names = [quote.quote(c.name) for c in table.columns]
        values = [
            converted(c.name) if c.name in ids else quote.quote(c.name) for c in table.columns
        ]
        order = ", ".join(quote.quote(c.name) for c in table.primary_key.columns)
        ddl += [
            *(f"DROP INDEX {quote.quote(str(i.name))}" for i in _sorted(table.indexes)),
            f"ALTER TABLE {name} RENAME TO {old}",
            *_create((table,), dialect),
            f"INSERT INTO {name} ({', '.join(names)}) SELECT {', '.join(values)} FROM {old} "
            f"ORDER BY {order}",
            f"DROP TABLE {old}",
        ]
    return [*ddl, f"DROP TABLE temp.{hexes}"]


CHECKPOINT_STEPS: tuple[Step, ...] = (
    Step(1, "checkpoint threads, checkpoints, values and writes", _checkpoint_tables),
    Step(
        2, "the effect journal", lambda tables, dialect: journal_ddl(_v2_journal(tables), dialect)
    ),
    Step(3, "tombstones refuse writes to erased tenants and threads", _checkpoint_tombstones),
    Step(4, "a stamp per thread, so a writer's next put reads nothing back", _checkpoint_stamps),
    Step(5, "compressed values and pending writes", _checkpoint_codecs),
    Step(6, "puts stop changing indexed thread columns", _checkpoint_last_writes),
    Step(7, "a list value shares the payload of the pending write it came from", _checkpoint_links),
    Step(8, "a sparse run index; SQLite keeps pending writes in key order", _checkpoint_compact),
    Step(9, "PostgreSQL reads value rows by key through the primary key", _checkpoint_chain_index),
    Step(10, "compressed checkpoint bodies", _checkpoint_body_codecs),
    Step(11, "checkpoint and task ids stored as bytes (a UUID in 16)", _checkpoint_binary_ids),
    Step(
        12,
        "payloads compressed with the preset dictionary are tagged d1 (no DDL: a memfold from "
        "before refuses the database instead of failing to read them)",
        lambda tables, dialect: [],
    ),
    Step(13, "journal entries name the checkpoint their step ran from", _journal_origins),
)
"""The ``checkpoints`` component's steps; append-only like `STEPS`."""


class SQLSchemaSteps(schema_steps.SchemaSteps):
    """One store kind's steps on a SQL database, run by a store's runner.

    Args:
        runner: the store's runner (its connections and transactions).
        tables: the thread tables of the schema (their prefix, schema and version table).
        target: what the steps' DDL is built from (``tables``, or the kind's own tables).
        kind: the ``component`` recorded in the version table.
        steps: the kind's steps.
        preamble: statements an upgrade runs before applying any step (idempotent).
    """

    def __init__(
        self,
        runner: _Runner,
        tables: Tables,
        target: Any,
        kind: str,
        steps: tuple[Step, ...],
        preamble: tuple[str, ...] = (),
    ) -> None:
        self.runner = runner
        self.tables, self.target = tables, target
        self.dialect: Dialect = runner.driver.engine.dialect
        self.kind, self.steps, self.preamble = kind, steps, preamble
        self._numbered = {step.version: step for step in steps}
        self.backend = self.dialect.name
        self.where = f"(tables {tables.prefix}*)"

    def _bookkeeping(self) -> tuple[str, ...]:
        """What the first applied step needs first: the schema, extensions, version table."""
        statements = []
        if self.tables.schema is not None and self.dialect.name == "postgresql":
            quoted = self.dialect.identifier_preparer.quote_schema(self.tables.schema)
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        version_table = CreateTable(self.tables.schema_versions, if_not_exists=True)
        return (*statements, *self.preamble, str(version_table.compile(dialect=self.dialect)))

    def _found(self, applied: dict[int, str]) -> SchemaStatus:
        """The status of a schema whose version table holds ``applied`` (version: checksum)."""
        version = max(applied, default=0)
        self.check(version)
        steps = self._numbered
        for number, checksum in applied.items():
            if steps[number].checksum(self.target, self.dialect) != checksum:
                raise Conflict(
                    f"{self.kind} schema step {number} recorded in the database differs from "
                    "this memfold's: the database was made by a modified memfold"
                )
        first = min(set(steps) - set(applied), default=None)

        def statements(step: schema_steps.Step) -> tuple[str, ...]:
            ddl = tuple(steps[step.version].ddl(self.target, self.dialect))
            return (*self._bookkeeping(), *ddl) if step.version == first else ddl

        return self.status_at(version, lambda step: step.version in applied, statements)

    def _applied(self) -> Plan:
        """The version table's rows for this kind (none when the table does not exist)."""
        v = self.tables.schema_versions
        if self.dialect.name == "postgresql":
            name = self.dialect.identifier_preparer.format_table(v)
            exists = text("SELECT to_regclass(:name) IS NOT NULL").bindparams(name=name)
        else:
            exists = text(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = :name"
            ).bindparams(name=v.name)
        if not (yield exists, None).scalar():
            return {}
        result = yield (
            select(v.c.version, v.c.checksum).where(v.c.component == bindparam("component")),
            {"component": self.kind},
        )
        return dict(result.rows)

    def status_plan(self) -> Plan:
        """Plan that reads the status (no writes)."""
        return self._found((yield from self._applied()))

    def upgrade_plan(self) -> Plan:
        """Plan that applies the pending steps under the lock; returns the status found."""
        if self.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)").bindparams(
                bindparam("key", type_=BigInteger)
            )
            yield lock, {"key": lock_key(self.tables)}
        found = self._found((yield from self._applied()))
        for pending in found.pending:
            for statement in pending.statements:
                yield text(statement), None
            step = self._numbered[pending.version]
            yield (
                insert(self.tables.schema_versions),
                {
                    "component": self.kind,
                    "version": step.version,
                    "checksum": step.checksum(self.target, self.dialect),
                    "applied_at": time.time(),
                },
            )
        return found

    def status(self) -> SchemaStatus:
        """Read where the schema stands (changes nothing)."""
        found: SchemaStatus = self.runner._run(self.status_plan, write=False)
        return found

    async def astatus(self) -> SchemaStatus:
        """Async `status`."""
        found: SchemaStatus = await self.runner._arun(self.status_plan, write=False)
        return found

    def upgrade(self) -> SchemaStatus:
        """Apply the pending steps in one transaction under the lock."""
        found: SchemaStatus = self.runner._run(self.upgrade_plan, write=True)
        return found

    async def aupgrade(self) -> SchemaStatus:
        """Async `upgrade`."""
        found: SchemaStatus = await self.runner._arun(self.upgrade_plan, write=True)
        return found
