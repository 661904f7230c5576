"""The SQL tables, declared once; names carry a validated, configurable prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import (
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

__all__ = ["Tables", "build_tables"]

_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,30}")


@dataclass(frozen=True, slots=True)
class Tables:
    """The tables of one memfold schema."""

    metadata: MetaData
    prefix: str
    schema_versions: Table
    threads: Table
    messages: Table

    @property
    def messages_fts(self) -> str:
        """Name of the SQLite FTS5 index over ``messages.search_text``."""
        return f"{self.prefix}messages_fts"

    @property
    def fts_state(self) -> str:
        """Name of the SQLite table recording how far the FTS5 index has caught up."""
        return f"{self.prefix}fts_state"


def build_tables(prefix: str = "memfold_") -> Tables:
    """Declare memfold's tables with names starting ``prefix`` (lower-case letters, digits, _)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise InvalidInput(
            f"table prefix {prefix!r} must start with a letter and use only a-z, 0-9 and _ "
            "(at most 31 characters)"
        )
    md = MetaData()
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
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("tenant", String(512), nullable=False),
        Column("thread_id", String(512), nullable=False),
        Column("message_id", String(512), nullable=False),
        Column("body", Text, nullable=False),
        Column("search_text", Text, nullable=False),
        UniqueConstraint("tenant", "thread_id", "message_id", name=f"{prefix}messages_id"),
        Index(f"{prefix}messages_order", "tenant", "thread_id", "seq"),
        sqlite_autoincrement=True,
    )
    return Tables(md, prefix, schema_versions, threads, messages)
