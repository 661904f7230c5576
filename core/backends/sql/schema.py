"""The SQL tables, declared once; names carry a validated, configurable prefix and schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from memfold.errors import InvalidInput

__all__ = ["UNKNOWN_FIRST_US", "Tables", "build_tables", "check_schema_name"]

_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,30}")
_SCHEMA = re.compile(r"[a-z][a-z0-9_]{0,62}")

UNKNOWN_FIRST_US: Final = -(2**62)
"""A thread's ``first_us`` when SQL cannot read its first message's time (the body holds a
time that is not UTC): before any time, so a max-age sweep reads that message itself."""


@dataclass(frozen=True, slots=True)
class Tables:
    """The tables of one memfold schema."""

    metadata: MetaData
    prefix: str
    schema: str | None
    schema_versions: Table
    threads: Table
    messages: Table
    tombstones: Table
    """Tombstones of erased tenants, threads and users (`memfold.backends.sql.tombstones`)."""

    @property
    def messages_fts(self) -> str:
        """Name of the SQLite FTS5 index over each message's text."""
        return f"{self.prefix}messages_fts"

    @property
    def append_view(self) -> str:
        """Name of the SQLite view an append inserts into (a trigger does the work)."""
        return f"{self.prefix}append"

    @property
    def fts_state(self) -> str:
        """Name of the SQLite table recording how far the FTS5 index has caught up."""
        return f"{self.prefix}fts_state"

    @property
    def messages_words(self) -> str:
        """Name of the PostgreSQL GIN index over the words of ``messages.search_text``."""
        return f"{self.prefix}messages_words"

    @property
    def last_messages(self) -> str:
        """The PostgreSQL function returning a thread's last messages, newest first (schema
        step 6), schema-qualified."""
        name = f"{self.prefix}last_messages"
        return name if self.schema is None else f'"{self.schema}"."{name}"'


def check_schema_name(schema: object) -> str:
    """Return ``schema`` if it is a usable PostgreSQL schema name, else raise `InvalidInput`."""
    if (
        not isinstance(schema, str)
        or not _SCHEMA.fullmatch(schema)
        or schema.startswith("pg_")
        or schema == "information_schema"
    ):
        raise InvalidInput(
            f"schema {schema!r} must start with a letter and use only a-z, 0-9 and _ "
            "(at most 63 characters, not pg_* or information_schema)"
        )
    return schema


def build_tables(prefix: str = "memfold_", schema: str | None = None) -> Tables:
    """Declare memfold's tables with names starting ``prefix`` (lower-case letters, digits, _),
    in ``schema`` (the connection's default schema when None)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise InvalidInput(
            f"table prefix {prefix!r} must start with a letter and use only a-z, 0-9 and _ "
            "(at most 31 characters)"
        )
    if schema is not None:
        check_schema_name(schema)
    md = MetaData(schema=schema)
    schema_versions = Table(
        f"{prefix}schema_versions",
        md,
        Column("component", String(64), nullable=False),
        Column("version", Integer, nullable=False),
        Column("checksum", String(64), nullable=False),
        Column("applied_at", Float, nullable=False),
        PrimaryKeyConstraint("component", "version"),
    )
    threads = Table(
        f"{prefix}threads",
        md,
        # The thread's key in the messages table: one small integer instead of two strings.
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("tenant", String(512), nullable=False),
        Column("thread_id", String(512), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("message_count", Integer, nullable=False),
        Column("metadata", Text, nullable=False),
        # The thread's own time to live in seconds (`set_thread_ttl`; schema step 5).
        Column("ttl", Float, nullable=True),
        # When its first message was created (µs since the epoch; NULL: no messages), for
        # max-age sweeps (schema step 8; see `memfold.backends.sql.thread_sweep`).
        Column("first_us", BigInteger, nullable=True),
        UniqueConstraint("tenant", "thread_id", name=f"{prefix}threads_key"),
        Index(f"{prefix}threads_recent", "tenant", "updated_at"),
    )
    # For sweeps (schema step 5): threads over a message count (PostgreSQL only since step 7),
    # and threads whose own TTL is due (only threads with one are in that index); step 8:
    # threads by first message time.
    Index(f"{prefix}threads_size", threads.c.tenant, threads.c.message_count)
    Index(f"{prefix}threads_first", threads.c.tenant, threads.c.first_us)
    has_ttl = threads.c.ttl.is_not(None)
    Index(
        f"{prefix}threads_ttl",
        threads.c.tenant,
        threads.c.updated_at + threads.c.ttl,
        sqlite_where=has_ttl,
        postgresql_where=has_ttl,
    )
    messages = Table(
        f"{prefix}messages",
        md,
        # INTEGER on SQLite (the rowid alias), BIGINT elsewhere: a busy store outgrows 2**31.
        Column(
            "seq",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("thread", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
        # The message's JSON (body) leaves out its id, and its time when that is UTC: then
        # created_us holds it (microseconds since the epoch; 8-byte columns first, so no
        # padding). Bodies written before schema step 2 keep both inside.
        Column("created_us", BigInteger, nullable=True),
        Column("message_id", String(512), nullable=False),
        Column("body", Text, nullable=False),
        # The words to index, NULL when the index reads them from the body itself: on SQLite
        # for plain text, on PostgreSQL for plain ASCII text (`words.derivable`); else the
        # text (SQLite) or its distinct words (PostgreSQL, `memfold.backends.sql.words`).
        Column("search_text", Text, nullable=True),
        # The thread's tenant again, for row-level security policies (schema step 3).
        Column("tenant", String(512), nullable=False),
        UniqueConstraint("thread", "message_id", name=f"{prefix}messages_id"),
        Index(f"{prefix}messages_order", "thread", "seq"),
        # No AUTOINCREMENT on SQLite (it costs a page write per append): a new seq is always
        # above the full-text index's mark, which deletes lower to the highest seq left.
    )
    tombstones = Table(
        f"{prefix}tombstones",
        md,
        Column("tenant", String(512), nullable=False),
        Column("kind", String(16), nullable=False),  # tenant, thread or user
        Column("name", String(512), nullable=False),  # "", the thread id or the user id
        Column("subject", String(512), nullable=False),  # the erased user's id, or ""
        Column("erased_at", Float, nullable=False),
        Column("expires_at", Float),  # epoch seconds; NULL: until lifted
        PrimaryKeyConstraint("tenant", "kind", "name"),
    )
    return Tables(md, prefix, schema, schema_versions, threads, messages, tombstones)
