"""The SQL checkpoint tables, declared once, beside the thread tables (same prefix and schema).

- ``<prefix>cp_threads``: one row per thread: last write (``last_us``), own TTL, the
  writer's lease, whether a re-put may have left value rows no checkpoint reads (``dirty``,
  cleared by the sweep), and a stamp that each put, and each removal of checkpoints or values,
  renews (see `memfold.backends.sql.checkpoint_heads`). The sweep finds idle and expired
  threads through two indexed lower bounds of the last write and of the expiry
  (``updated_us``, ``expires_us``) that writes renew only once they lag by
  `REFRESH_AFTER_US`, so most puts change no indexed column (PostgreSQL then updates the row
  in place, adding no index entries); the sweep checks ``last_us`` before removing a thread.
- ``<prefix>checkpoints``: one row per checkpoint; ``metadata`` is JSON text, ``run_id`` its
  ``run_id`` copied out and indexed (where set) for ``delete_for_runs``.
- ``<prefix>cp_values``: one row per `memfold.checkpoint_deltas.StoredBlob` (none for "no
  value"), keyed by ``(channel, version, owner)`` inside a thread namespace; indexed by
  snapshot key so a read fetches whole delta chains with one query. A row whose payload is
  byte for byte a pending write of the checkpoint it was put from holds no payload of its own
  but the key of that write (``link_checkpoint``, ``link_task``, ``link_idx``), and reads take
  the write's; a removal of the write first copies it back into the row.
- ``<prefix>cp_writes``: pending writes, keyed by ``(checkpoint, task_id, idx)``; SQLite stores
  them in that key's order (``WITHOUT ROWID``), so the key is not kept a second time in an index.

- ``<prefix>cp_journal``: the effect journal (see `memfold.backends.sql.journal`).

Payloads and checkpoint bodies may be compressed (``codec``, ``body_codec``; see
`memfold.backends.sql.checkpoint_rows`). Checkpoint and task ids (``checkpoint_id``,
``parent_id``, ``task_id``, ``link_checkpoint``, ``link_task``) are binary: a UUID's 16 bytes,
or another id's UTF-8 and a NUL terminator (see `memfold.backends.sql.checkpoint_rows.id_bytes`),
ordered as text among ids of one form; thread ids, namespaces and value rows' owners (which
checkpoints' refs name in JSON) are text.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from memfold.backends.sql.journal import build_journal_table
from memfold.backends.sql.schema import Tables, build_tables

__all__ = ["REFRESH_AFTER_US", "CheckpointTables", "build_checkpoint_tables"]

_ID = 512

REFRESH_AFTER_US = 30_000_000
"""A write renews a thread's indexed times once they lag its own time by this many microseconds
(30 s)."""


@dataclass(frozen=True, slots=True)
class CheckpointTables:
    """The checkpoint tables of one memfold schema (and its version table)."""

    base: Tables
    threads: Table
    checkpoints: Table
    values: Table
    writes: Table
    journal: Table

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema holding the tables (None: the connection's default)."""
        return self.base.schema


def _key() -> list[Column[str]]:
    return [
        Column("tenant", String(_ID), nullable=False),
        Column("thread_id", String(_ID), nullable=False),
        Column("namespace", String(_ID), nullable=False),
    ]


def build_checkpoint_tables(
    prefix: str = "memfold_", schema: str | None = None
) -> CheckpointTables:
    """Declare the checkpoint tables with names starting ``prefix``, in ``schema``."""
    base = build_tables(prefix, schema)
    md = base.metadata
    threads = Table(
        f"{prefix}cp_threads",
        md,
        Column("tenant", String(_ID), nullable=False),
        Column("thread_id", String(_ID), nullable=False),
        Column("updated_us", BigInteger, nullable=False),
        Column("ttl", Float),
        Column("expires_us", Float),
        Column("holder", String(_ID)),
        Column("lease_until_us", BigInteger),
        Column("dirty", Integer, nullable=False),
        Column("stamp", BigInteger),
        Column("last_us", BigInteger),
        PrimaryKeyConstraint("tenant", "thread_id"),
        Index(f"{prefix}cp_threads_idle", "updated_us"),
        Index(f"{prefix}cp_threads_expiry", "expires_us"),
        Index(f"{prefix}cp_threads_dirty", "dirty"),
    )
    checkpoints = Table(
        f"{prefix}checkpoints",
        md,
        *_key(),
        Column("checkpoint_id", LargeBinary, nullable=False),
        Column("parent_id", LargeBinary),
        Column("created_us", BigInteger, nullable=False),
        Column("run_id", String(_ID)),
        Column("metadata", Text, nullable=False),
        Column("body_tag", String(_ID), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("versions", Text, nullable=False),
        Column("refs", Text, nullable=False),
        Column("body_codec", String(16)),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "checkpoint_id"),
        Index(
            f"{prefix}checkpoints_run",
            "tenant",
            "run_id",
            sqlite_where=text("run_id IS NOT NULL"),
            postgresql_where=text("run_id IS NOT NULL"),
        ),
        Index(f"{prefix}checkpoints_age", "created_us"),
        Index(f"{prefix}checkpoints_recent", "tenant", "checkpoint_id"),
    )
    values = Table(
        f"{prefix}cp_values",
        md,
        *_key(),
        Column("channel", String(_ID), nullable=False),
        Column("version", String(_ID), nullable=False),
        Column("owner", String(_ID), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("digest", LargeBinary, nullable=False),
        Column("tag", String(_ID), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("length", Integer, nullable=False),
        Column("depth", Integer, nullable=False),
        Column("base_version", String(_ID)),
        Column("base_owner", String(_ID), nullable=False),
        Column("snapshot_version", String(_ID)),
        Column("snapshot_owner", String(_ID), nullable=False),
        Column("snapshot_length", Integer, nullable=False),
        Column("codec", String(16)),
        Column("link_checkpoint", LargeBinary),
        Column("link_task", LargeBinary),
        Column("link_idx", Integer),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "channel", "version", "owner"),
        Index(
            f"{prefix}cp_values_chain",
            "tenant",
            "thread_id",
            "namespace",
            "channel",
            "snapshot_version",
            "snapshot_owner",
            postgresql_where=text("snapshot_version IS NOT NULL"),
        ),
    )
    writes = Table(
        f"{prefix}cp_writes",
        md,
        *_key(),
        Column("checkpoint_id", LargeBinary, nullable=False),
        Column("task_id", LargeBinary, nullable=False),
        Column("idx", Integer, nullable=False),
        Column("channel", String(_ID), nullable=False),
        Column("tag", String(_ID), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("task_path", Text, nullable=False),
        Column("codec", String(16)),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "checkpoint_id", "task_id", "idx"),
        sqlite_with_rowid=False,
    )
    journal = build_journal_table(md, prefix)
    return CheckpointTables(base, threads, checkpoints, values, writes, journal)
