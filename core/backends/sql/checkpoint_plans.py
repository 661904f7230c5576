"""Each checkpoint operation as a plan (see `memfold.backends.sql.plans`): pure generators that
yield ``(statement, params)`` and receive `Rows`, run by the SQL runner sync or async.

The semantics are those of `memfold.backends.memory_checkpoints`, on the layout of
`memfold.checkpoint_deltas`:

- Puts and pending writes are `memfold.backends.sql.checkpoint_writes`' (a fast form that
  reads nothing, and a full one that reads under the thread's lock).
- A read costs two queries: the checkpoint joined with its writes, then every value row it reads
  together with the rest of each delta chain (the rows sharing the root row's snapshot key).
  The wanted row keys travel as one JSON parameter (``json_each`` / ``jsonb_to_recordset``).
  On PostgreSQL, reading one checkpoint is one statement: it finds the row keys from the
  checkpoint's stored versions and refs itself (a second query reads any it could not find).
- Metadata filters compare JSON values with bound parameters only (``json_each`` on SQLite,
  ``jsonb`` equality on PostgreSQL).
- Retention finds its work through indexes (expiry, idle time, age, per-namespace counts, the
  ``dirty`` flag), then drops checkpoints and collects unreachable value rows per namespace,
  giving the thread a new stamp so no writer plans from what it remembers of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import count
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Dialect,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from memfold import checkpoint_ops as ops
from memfold.backends.sql.checkpoint_heads import Head, new_stamp
from memfold.backends.sql.checkpoint_rows import (
    NO_VALUE,
    VALUE_COLUMNS,
    ParsedRows,
    decompress,
    from_us,
    has_row,
    id_bytes,
    id_text,
    inline_value,
    to_us,
    version_of,
)
from memfold.backends.sql.checkpoint_schema import CheckpointTables
from memfold.backends.sql.checkpoint_writes import CheckpointWrites, roots_params
from memfold.backends.sql.journal import JournalPlans
from memfold.backends.sql.plans import Plan
from memfold.backends.sql.tombstones import TombstonePlans, user_params, user_where
from memfold.checkpoint_deltas import (
    BlobKey,
    ChainMemo,
    DeltaPolicy,
    StoredBlob,
    channel_key,
    reachable,
    rebuild,
)
from memfold.checkpoint_history import AncestorWalk, spare_history
from memfold.checkpoint_model import (
    Blob,
    ChannelHistory,
    Checkpoint,
    PendingWrite,
    SequenceBlob,
    StorageStats,
    SweepResult,
    Version,
)
from memfold.checkpoints import matches_filter
from memfold.errors import Conflict, InvalidInput, NotFound
from memfold.journal import JOURNAL_OPS
from memfold.model import JSON
from memfold.ops import Op
from memfold.tombstones import EraseSubject, ErasureCounts, FindThreads, LiftTombstones

__all__ = ["CheckpointPlans"]

_READS = (
    ops.GetCheckpoint,
    ops.ListCheckpoints,
    ops.ReadChannelHistory,
    ops.CheckpointStats,
    ops.GetCheckpointThreadTTL,
    FindThreads,
)

_SINGLE = (ops.SetCheckpointThreadTTL, ops.ReleaseThread)


@dataclass(slots=True)
class _Removed:
    checkpoints: int = 0
    blobs: int = 0
    writes: int = 0


@dataclass(slots=True)
class _Space:
    """What retention needs of one thread namespace: checkpoint ids (oldest first, in the
    column's order) with their versions, refs and age; value row keys and chain links; write
    counts per checkpoint."""

    ids: list[str]
    records: dict[str, tuple[dict[str, Version], dict[str, str], int]]
    rows: dict[BlobKey, StoredBlob]
    writes: dict[str, int]

    def roots(self) -> Iterable[BlobKey]:
        for versions, refs, _ in self.records.values():
            for channel, version in versions.items():
                yield channel_key(channel, version, refs)


_CP = [
    "tenant",
    "thread_id",
    "namespace",
    "checkpoint_id",
    "parent_id",
    "created_us",
    "metadata",
    "body_tag",
    "body",
    "versions",
    "refs",
    "body_codec",
]
_WRITE = ["task_id", "idx", "channel", "tag", "data", "task_path", "codec"]


class CheckpointPlans:
    """Plans for the checkpoint operations on one set of tables and one SQL dialect; the
    statements of the hot paths (put, put_writes, get) are built once here (see `prepared`)."""

    def __init__(self, tables: CheckpointTables, dialect: Dialect) -> None:
        self.tables = tables
        self.dialect = dialect.name
        self._quote = dialect.identifier_preparer
        t, c = tables.threads, tables.checkpoints
        ins = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._cache: dict[Any, ClauseElement] = {}
        self.parsed = ParsedRows()
        self._journal = JournalPlans(tables.journal, dialect)
        self._tombstones = TombstonePlans(tables.base.tombstones, self.dialect)

        thread_key = and_(
            t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id")
        )
        self._ensure_thread = (
            ins(t)
            .values(
                tenant=bindparam("tenant"),
                thread_id=bindparam("thread_id"),
                updated_us=bindparam("now"),
                last_us=bindparam("now"),
                dirty=0,
            )
            .on_conflict_do_nothing()
        )
        space = self._space_where(c)
        joined = self._with_writes(c)
        by_id = joined.where(space, c.c.checkpoint_id == bindparam("checkpoint_id"))
        self._get_by_id = by_id.execution_options(server_function="get")
        newest = select(c).where(space).order_by(c.c.checkpoint_id.desc()).limit(1).subquery("c")
        self._get_newest = self._with_writes(newest).execution_options(server_function="get")
        if self.dialect == "postgresql":
            whole = (text(self._get_whole_sql(by_id)) for by_id in (False, True))
            self._get_whole_newest, self._get_whole_by_id = (
                s.execution_options(server_function="get") for s in whole
            )
        self._history_page = text(self._history_sql()).execution_options(server_function="get")
        self._values_by_key, self._values_with_chains = (
            text(self._values_sql(chains)).execution_options(server_function="get")
            for chains in (False, True)
        )
        self.puts = CheckpointWrites(tables, dialect, self._values_by_key)
        self._new_stamp = update(t).where(thread_key).values(stamp=bindparam("stamp"))
        self._set_ttl = (
            update(t)
            .where(thread_key)
            .values(
                ttl=bindparam("ttl"),
                expires_us=t.c.updated_us + bindparam("ttl_us"),
            )
        )
        self._get_ttl = select(t.c.ttl).where(thread_key)
        self._release = (
            update(t)
            .where(thread_key, t.c.holder == bindparam("writer"))
            .values(holder=None, lease_until_us=None)
        )

    # Statement builders.

    @staticmethod
    def _space_where(table: Any) -> ColumnElement[bool]:
        return and_(
            table.c.tenant == bindparam("tenant"),
            table.c.thread_id == bindparam("thread_id"),
            table.c.namespace == bindparam("namespace"),
        )

    def _with_writes(self, source: Any) -> Any:
        """A checkpoint's columns, its writes' and (last) its thread's stamp."""
        t, w = self.tables.threads, self.tables.writes
        on = and_(
            w.c.tenant == source.c.tenant,
            w.c.thread_id == source.c.thread_id,
            w.c.namespace == source.c.namespace,
            w.c.checkpoint_id == source.c.checkpoint_id,
        )
        stamp = select(t.c.stamp).where(
            t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id")
        )
        return select(
            *(source.c[n] for n in _CP), *(w.c[n] for n in _WRITE), stamp.scalar_subquery()
        ).select_from(source.outerjoin(w, on))

    def _values_sql(self, chains: bool) -> str:
        """Value rows by key (``:roots``, a JSON list of ``{t, n, c, v, o}``) in one query;
        with ``chains``, a list row's whole delta chain instead (every row sharing its
        snapshot, each row once however many roots need it), each half an index lookup per
        root (SQLite's ``CROSS JOIN`` keeps the roots outermost)."""
        table = self._quote.format_table(self.tables.values)
        if self.dialect == "postgresql":
            source = (
                "jsonb_to_recordset(CAST(:roots AS jsonb)) AS j(t text, n text, c text, "
                "v text, o text)"
            )
            fields = {k: f"j.{k}" for k in "tncvo"}
            join = "JOIN"
        else:
            source = "json_each(:roots) AS j"
            fields = {k: f"json_extract(j.value, '$.{k}')" for k in "tncvo"}
            join = "CROSS JOIN"
        columns, shared = self._value_columns()

        def by_key(alias: str) -> str:
            return (
                f"FROM {source} {join} {table} AS {alias} ON {alias}.tenant = :tenant "
                f"AND {alias}.thread_id = {fields['t']} AND {alias}.namespace = {fields['n']} "
                f"AND {alias}.channel = {fields['c']} AND {alias}.version = {fields['v']} "
                f"AND {alias}.owner = {fields['o']}"
            )

        if self.dialect == "postgresql":
            return self._values_sql_postgres(source, table, columns, shared, chains)
        roots = f"{columns} {by_key('x')} {shared}"
        if not chains:
            return roots
        return (
            f"{roots} WHERE {_NOT_LISTED} UNION ALL {columns} FROM (SELECT "
            f"{_CHAIN_TIPS.format('r')} {by_key('r')} WHERE r.{_LISTED} GROUP BY "
            f"{_CHAIN_GROUP.format('r')}) AS g {join} {table} AS x ON {_CHAIN_ROWS} {shared}"
        )

    def _value_columns(self) -> tuple[str, str]:
        """The select list of a value row read (alias ``x``), with the payload of the pending
        write a row shares (alias ``w``), and the join that finds that write."""
        payload = {
            n: f"CASE WHEN x.link_task IS NULL THEN x.{n} ELSE w.{n} END AS {n}"
            for n in ("data", "codec")
        }
        columns = "SELECT " + ", ".join(payload.get(n, f"x.{n}") for n in VALUE_COLUMNS)
        writes = self._quote.format_table(self.tables.writes)
        shared = (
            f"LEFT JOIN {writes} AS w ON w.tenant = x.tenant AND w.thread_id = x.thread_id "
            "AND w.namespace = x.namespace AND w.checkpoint_id = x.link_checkpoint "
            "AND w.task_id = x.link_task AND w.idx = x.link_idx"
        )
        return columns, shared

    @staticmethod
    def _values_sql_postgres(
        source: str, table: str, columns: str, shared: str, chains: bool
    ) -> str:
        """PostgreSQL's `_values_sql`: each lookup is a ``LATERAL`` subquery behind
        ``OFFSET 0``, so the planner runs index lookups per root instead of hashing the
        tenant's whole value table (which it picks on fresh tables with no statistics)."""
        space = "x.tenant = :tenant AND x.thread_id = j.t AND x.namespace = j.n AND x.channel = j.c"
        by_key = f"{space} AND x.version = j.v AND x.owner = j.o"
        roots = (
            f"{columns} FROM {source} CROSS JOIN LATERAL "
            f"(SELECT * FROM {table} AS x WHERE {by_key} OFFSET 0) AS x {shared}"
        )
        if not chains:
            return roots
        return (
            f"{roots} WHERE {_NOT_LISTED} UNION ALL {columns} FROM (SELECT "
            f"{_CHAIN_TIPS.format('r')} FROM {source} CROSS JOIN LATERAL (SELECT * FROM {table} "
            f"AS x WHERE {by_key} OFFSET 0) AS r WHERE r.{_LISTED} GROUP BY "
            f"{_CHAIN_GROUP.format('r')}) AS g CROSS JOIN LATERAL "
            f"(SELECT * FROM {table} AS x WHERE {_CHAIN_ROWS} OFFSET 0) AS x {shared}"
        )

    def _history_sql(self) -> str:
        """A page of `_history`: checkpoint ``:start`` (depth 0) and up to ``:limit`` of its
        ancestors along parents, each with its versions, refs and pending writes (`_WRITE`
        columns, nulls for none; the start's own only if ``:own`` is above 0), by depth."""
        q = self._quote
        cp, w = q.format_table(self.tables.checkpoints), q.format_table(self.tables.writes)
        space = "{0}.tenant = :tenant AND {0}.thread_id = :thread_id AND {0}.namespace = :namespace"
        by_key = f"{space.format('c')} AND c.checkpoint_id = chain.parent_id"
        # PostgreSQL plans the join from a thread's row estimate, and can scan the thread at
        # each step; a lateral lookup by primary key cannot.
        parent = (
            f"CROSS JOIN LATERAL (SELECT * FROM {cp} AS c WHERE {by_key} LIMIT 1) AS c"
            if self.dialect == "postgresql"
            else f"JOIN {cp} AS c ON {by_key}"
        )
        return (
            "WITH RECURSIVE chain(checkpoint_id, parent_id, versions, refs, depth) AS ("
            f"SELECT checkpoint_id, parent_id, versions, refs, 0 FROM {cp} AS c "
            f"WHERE {space.format('c')} AND c.checkpoint_id = :start "
            "UNION ALL SELECT c.checkpoint_id, c.parent_id, c.versions, c.refs, chain.depth + 1 "
            f"FROM chain {parent} WHERE chain.depth < :limit) "
            "SELECT chain.depth, chain.checkpoint_id, chain.parent_id, chain.versions, chain.refs, "
            f"{', '.join(f'w.{n}' for n in _WRITE)} FROM chain LEFT JOIN {w} AS w "
            f"ON {space.format('w')} AND w.checkpoint_id = chain.checkpoint_id "
            "AND (chain.depth > 0 OR :own > 0) "
            "ORDER BY chain.depth"
        )

    def _get_whole_sql(self, by_id: bool) -> str:
        """PostgreSQL: one checkpoint (the newest, or ``:checkpoint_id``) with its writes and
        every value row it reads, in one statement. Rows start with 0 (the checkpoint's
        `_CP` columns and one write's `_WRITE` columns, as `_with_writes` reads them) or 1
        (a value row's `VALUE_COLUMNS` after as many nulls). The row keys come from the
        stored JSON as written (``json``, not ``jsonb``, keeps each version's text as
        `version_key` wrote it, non-ASCII text aside); refs naming no row (`NO_VALUE`, an
        `EMPTY_VALUE`) are skipped.
        The keys only choose what to prefetch: `_assemble` reads any row it wants that
        did not come back."""
        q = self._quote
        cp, w = q.format_table(self.tables.checkpoints), q.format_table(self.tables.writes)
        where = "tenant = :tenant AND thread_id = :thread_id AND namespace = :namespace"
        if by_id:
            where += " AND checkpoint_id = :checkpoint_id"
        head = (
            f"SELECT {', '.join(_CP)} FROM {cp} WHERE {where} ORDER BY checkpoint_id DESC LIMIT 1"
        )
        # PostgreSQL's JSON functions refuse a NUL anywhere in the text, so the NUL starting
        # what names no row is read as \u0001 (an id never holds either); E'' strings read the
        # same whatever standard_conforming_strings says.
        nul = json.dumps(NO_VALUE)[1:-1].replace("\\", "\\\\")
        keys = (
            "SELECT t, n, c, v, o FROM (SELECT h.thread_id AS t, h.namespace AS n, e.key AS c, "
            "CAST(e.value AS text) AS v, COALESCE(CAST(replace(h.refs, "
            f"E'{nul}', E'{nul[:-1]}1') AS json) ->> e.key, '') AS o "
            "FROM h CROSS JOIN json_each(CAST(h.versions AS json)) AS e) AS k "
            "WHERE left(o, 1) <> chr(1)"
        )
        columns, shared = self._value_columns()
        values = self._values_sql_postgres(
            "j", q.format_table(self.tables.values), columns, shared, chains=True
        )
        on = " AND ".join(
            f"w.{n} = h.{n}" for n in ("tenant", "thread_id", "namespace", "checkpoint_id")
        )
        nulls = ", ".join(["NULL"] * len(VALUE_COLUMNS))
        return (
            f"WITH h AS ({head}), j AS ({keys}), v AS ({values}) "
            f"SELECT 0, {', '.join(f'h.{n}' for n in _CP)}, "
            f"{', '.join(f'w.{n}' for n in _WRITE)}, {nulls} "
            f"FROM h LEFT JOIN {w} AS w ON {on} "
            f"UNION ALL SELECT 1, {', '.join(['NULL'] * (len(_CP) + len(_WRITE)))}, v.* FROM v"
        )

    @property
    def prepared(self) -> list[ClauseElement]:
        """The statements built once, for a runner to compile once."""
        mine = [s for s in vars(self).values() if isinstance(s, ClauseElement)]
        return mine + self.puts.prepared

    def writes(self, op: Op[Any]) -> bool:
        """Whether ``op`` changes data (and so needs a write transaction)."""
        if isinstance(op, JOURNAL_OPS):
            return self._journal.writes(op)
        return not isinstance(op, _READS)

    def single_statement(self, op: Op[Any]) -> bool:
        """Whether ``op``'s plan is one statement, atomic without a transaction around it."""
        return isinstance(op, _SINGLE)

    def plan(self, op: Op[Any], policy: DeltaPolicy) -> Plan:
        """The plan that runs ``op`` (puts and pending writes: see `puts`)."""
        if isinstance(op, JOURNAL_OPS):
            return self._journal.plan(op)
        match op:
            case ops.GetCheckpoint():
                return self.get(op, None, None)
            case ops.ListCheckpoints():
                return self._list(op)
            case ops.ReadChannelHistory():
                return self._history(op)
            case ops.ListEarlyWrites(tenant, thread_id):
                return self._early_writes(tenant, thread_id)
            case ops.DeleteCheckpointThread(tenant, thread_id):
                return self._delete_thread(tenant, thread_id)
            case ops.DeleteCheckpointRuns(tenant, run_ids):
                return self._delete_runs(tenant, run_ids)
            case ops.CopyCheckpointThread():
                return self._copy(op)
            case ops.PruneCheckpointThreads(tenant, thread_ids, keep_latest):
                return self._prune(tenant, thread_ids, keep_latest)
            case ops.GetCheckpointThreadTTL(tenant, thread_id):
                return self._get_ttl_plan(tenant, thread_id)
            case ops.SetCheckpointThreadTTL(tenant, thread_id, ttl):
                return self._ttl(tenant, thread_id, ttl)
            case ops.ReleaseThread(tenant, thread_id, writer):
                return self._release_plan(tenant, thread_id, writer)
            case ops.SweepCheckpoints():
                return self._sweep(op)
            case ops.CheckpointStats(tenant, thread_id):
                return self._stats(tenant, thread_id)
            case FindThreads(tenant, user_id):
                return self._find_threads(tenant, user_id)
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._tombstones.lift(op)
        raise InvalidInput(f"the SQL checkpoint store cannot run {type(op).__name__}")

    # Reads.

    def _assemble(
        self,
        tenant: str,
        headers: list[tuple[Any, ...]],
        writes: Any,
        fetched: Iterable[Any] | None = None,
        seen: dict[bytes, bytes] | None = None,
    ) -> Plan:
        """Checkpoints from their rows (in order) and their writes (by thread, namespace and
        stored checkpoint id), reading all their value rows and chains in one query (only those
        missing from ``fetched`` value rows, if given). Each distinct value row is parsed once
        and each chain joined once, however many of the checkpoints read it; ``seen`` holds the
        payloads the read already decompressed (its writes')."""
        parsed = []
        wanted: dict[tuple[str, str, BlobKey], None] = {}
        refs_read: dict[str, dict[str, str]] = {"{}": {}}  # read only: shared by the headers
        for row in headers:
            thread_id, namespace, refs = row[1], row[2], row[10]
            versions_map: dict[str, Version] = json.loads(row[9])
            refs_map = refs_read.get(refs)
            if refs_map is None:
                refs_map = refs_read[refs] = json.loads(refs)
            keys = [
                (channel, channel_key(channel, version, refs_map))
                for channel, version in versions_map.items()
            ]
            parsed.append((row, versions_map, keys))
            for _, key in keys:
                if has_row(key[2]):
                    wanted[(thread_id, namespace, key)] = None
        rows: dict[tuple[str, str], dict[BlobKey, StoredBlob]] = {}
        if fetched is not None:
            _parse_rows(fetched, rows, self.parsed, seen)
            roots = [r for r in wanted if r[2] not in rows.get((r[0], r[1]), {})]
        else:
            roots = list(wanted)
        if roots:
            found = yield self._values_with_chains, roots_params(tenant, roots)
            _parse_rows(found.rows, rows, self.parsed, seen)
        out = []
        memos: dict[tuple[str, str], ChainMemo] = {}
        for row, versions_map, keys in parsed:
            _, thread_id, namespace, stored, parent, created, meta, tag, body, _, _, codec = row
            space = rows.get((thread_id, namespace), {})
            memo = memos.setdefault((thread_id, namespace), {})
            values: dict[str, Blob | SequenceBlob] = {}
            for channel, key in keys:
                root = space.get(key)
                if root is not None:
                    value = rebuild(root, space.get, memo)
                    if value is not None:
                        values[channel] = value
                elif (inline := inline_value(key[2])) is not None:
                    values[channel] = inline
            own = sorted(
                writes.get((thread_id, namespace, stored), ()),
                key=lambda w: (w.task_path, w.task_id, w.idx),
            )
            out.append(
                Checkpoint(
                    thread_id,
                    namespace,
                    id_text(stored),
                    None if parent is None else id_text(parent),
                    from_us(created),
                    json.loads(meta),
                    Blob(tag, decompress(bytes(body), codec)),
                    versions_map,
                    values,
                    tuple(own),
                )
            )
        return out

    def get(self, op: ops.GetCheckpoint, stamp: int | None, head: Head | None) -> Plan:
        """Read one checkpoint; its values come from ``head`` (the namespace's remembered head,
        see `memfold.backends.sql.checkpoint_heads`) when that is the checkpoint read, it
        kept the payload, and the thread's row still carries the remembered ``stamp``.
        Without such a head, PostgreSQL reads the checkpoint and its values in one statement
        (`_get_whole`)."""
        key = {"tenant": op.tenant, "thread_id": op.thread_id, "namespace": op.namespace}
        remembered = (
            head is not None
            and head.payload is not None
            and stamp is not None
            and op.checkpoint_id in (None, head.checkpoint_id)
        )
        if self.dialect == "postgresql" and not remembered:
            return (yield from self._get_whole(op, key))
        if op.checkpoint_id is None:
            found = yield self._get_newest, key
        else:
            found = yield self._get_by_id, {**key, "checkpoint_id": id_bytes(op.checkpoint_id)}
        if not found.rows:
            return None
        end = len(_CP) + len(_WRITE)
        header = found.rows[0][: len(_CP)]
        writes = [_write(r[len(_CP) : end]) for r in found.rows if r[len(_CP)] is not None]
        if (
            head is not None
            and head.payload is not None
            and stamp is not None
            and found.rows[0][end] == stamp
            and id_text(header[3]) == head.checkpoint_id
            and json.loads(header[9]) == head.versions
        ):
            _, thread_id, namespace, _, parent, created, meta, tag, body, _, _, codec = header
            return Checkpoint(
                thread_id,
                namespace,
                head.checkpoint_id,
                None if parent is None else id_text(parent),
                from_us(created),
                json.loads(meta),
                Blob(tag, decompress(bytes(body), codec)),
                dict(head.versions),
                dict(head.payload),
                tuple(sorted(writes, key=lambda w: (w.task_path, w.task_id, w.idx))),
            )
        result = yield from self._assemble(
            op.tenant, [header], {(op.thread_id, op.namespace, header[3]): writes}
        )
        return result[0]

    def _get_whole(self, op: ops.GetCheckpoint, key: dict[str, Any]) -> Plan:
        """PostgreSQL's read of a checkpoint no head holds: one statement (see
        `_get_whole_sql`)."""
        if op.checkpoint_id is None:
            found = yield self._get_whole_newest, key
        else:
            found = yield (
                self._get_whole_by_id,
                {**key, "checkpoint_id": id_bytes(op.checkpoint_id)},
            )
        split = 1 + len(_CP) + len(_WRITE)
        heads = [r[1:split] for r in found.rows if r[0] == 0]
        if not heads:
            return None
        header = heads[0][: len(_CP)]
        writes = [_write(r[len(_CP) :]) for r in heads if r[len(_CP)] is not None]
        fetched = [r[split:] for r in found.rows if r[0] == 1]
        result = yield from self._assemble(
            op.tenant, [header], {(op.thread_id, op.namespace, header[3]): writes}, fetched
        )
        return result[0]

    def _list_statement(self, op: ops.ListCheckpoints) -> tuple[Any, dict[str, Any], bool]:
        """The list query for ``op``'s shape (cached: the listed checkpoints, newest first,
        each joined with its writes as `_with_writes` reads them), its parameters, and whether
        the filter must be checked again here (object or array values on SQLite)."""
        c = self.tables.checkpoints
        kinds = tuple(_kind(json.loads(text)) for _, text in op.filter)
        post = self.dialect == "sqlite" and any(k in ("object", "array") for k in kinds)
        shape = (
            op.thread_id is None,
            op.namespace is None,
            op.checkpoint_id is None,
            op.before is None,
            op.limit is None or post,
            kinds,
        )
        params: dict[str, Any] = {"tenant": op.tenant}
        for i, (key, encoded) in enumerate(op.filter):
            params[f"fk{i}"] = key
            wanted = json.loads(encoded)
            params[f"fv{i}"] = encoded if self.dialect == "postgresql" else wanted
        for name in ("thread_id", "namespace", "limit"):
            if getattr(op, name) is not None:
                params[name] = getattr(op, name)
        for name in ("checkpoint_id", "before"):
            if getattr(op, name) is not None:
                params[name] = id_bytes(getattr(op, name))
        if ("list", shape) not in self._cache:
            where: list[Any] = [c.c.tenant == bindparam("tenant")]
            if op.thread_id is not None:
                where.append(c.c.thread_id == bindparam("thread_id"))
            if op.namespace is not None:
                where.append(c.c.namespace == bindparam("namespace"))
            if op.checkpoint_id is not None:
                where.append(c.c.checkpoint_id == bindparam("checkpoint_id"))
            if op.before is not None:
                where.append(c.c.checkpoint_id < bindparam("before"))
            where += [self._filter(i, kind) for i, kind in enumerate(kinds)]
            pk = [c.c.tenant, c.c.thread_id, c.c.namespace, c.c.checkpoint_id]
            # PostgreSQL chooses and sorts the page by key alone, then reads its rows by key:
            # sorting whole rows (bodies, metadata) cost it more than reading them again.
            narrow = self.dialect == "postgresql"
            query = select(*(pk if narrow else (c.c[n] for n in _CP))).where(*where)
            query = query.order_by(c.c.checkpoint_id.desc(), c.c.thread_id, c.c.namespace)
            if op.limit is not None and not post:
                query = query.limit(bindparam("limit", type_=Integer))
            page, w = query.subquery("k" if narrow else "c"), self.tables.writes
            found = c.alias("c") if narrow else page

            def on(table: Any) -> ColumnElement[bool]:
                return and_(*(table.c[k.name] == found.c[k.name] for k in pk))

            source = page.join(found, on(page)) if narrow else page
            self._cache[("list", shape)] = (
                select(*(found.c[n] for n in _CP), *(w.c[n] for n in _WRITE))
                .select_from(source.outerjoin(w, on(w)))
                .order_by(found.c.checkpoint_id.desc(), found.c.thread_id, found.c.namespace)
                .execution_options(server_function="list")
            )
        return self._cache[("list", shape)], params, post

    def _filter(self, i: int, kind: str) -> Any:
        """Metadata key ``:fk<i>`` equals the JSON value ``:fv<i>``."""
        table = self._quote.format_table(self.tables.checkpoints)
        if self.dialect == "postgresql":
            return text(
                f"CAST({table}.metadata AS jsonb) -> CAST(:fk{i} AS text) = CAST(:fv{i} AS jsonb)"
            ).bindparams(bindparam(f"fk{i}", type_=String), bindparam(f"fv{i}", type_=String))
        m = f"m{i}"
        match kind:
            case "true" | "false" | "null" | "object" | "array":
                test = f"{m}.type = '{kind}'"
            case "number":
                test = f"{m}.type IN ('integer', 'real') AND {m}.value = :fv{i}"
            case _:
                test = f"{m}.type = 'text' AND {m}.value = :fv{i}"
        names = [f"fk{i}"] + ([f"fv{i}"] if ":fv" in test else [])
        return text(
            f"EXISTS (SELECT 1 FROM json_each({table}.metadata) AS {m} "
            f"WHERE {m}.key = :fk{i} AND {test})"
        ).bindparams(*(bindparam(n) for n in names))

    def _list(self, op: ops.ListCheckpoints) -> Plan:
        statement, params, post = self._list_statement(op)
        found = yield statement, params
        split = len(_CP)
        listed: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        writes: dict[tuple[str, str, str], list[PendingWrite]] = {}
        seen: dict[bytes, bytes] = {}
        for row in found.rows:
            key = (row[1], row[2], row[3])
            if key not in listed:
                listed[key] = row[:split]
            if row[split] is not None:
                writes.setdefault(key, []).append(_write(row[split:], seen))
        headers = list(listed.values())
        if post:
            headers = [h for h in headers if matches_filter(json.loads(h[6]), op.filter)]
            if op.limit is not None:
                headers = headers[: op.limit]
        if not headers:
            return []
        result: list[Checkpoint] = yield from self._assemble(op.tenant, headers, writes, seen=seen)
        return result

    def _early_writes(self, tenant: str, thread_id: str) -> Plan:
        c, w = self.tables.checkpoints, self.tables.writes
        stored = exists().where(
            c.c.tenant == w.c.tenant,
            c.c.thread_id == w.c.thread_id,
            c.c.namespace == w.c.namespace,
            c.c.checkpoint_id == w.c.checkpoint_id,
        )
        statement = self._cached(
            "early writes",
            select(w.c.namespace, w.c.checkpoint_id, *(w.c[name] for name in _WRITE))
            .where(self._thread_where(w), ~stored)
            .order_by(w.c.namespace, w.c.checkpoint_id, w.c.task_path, w.c.task_id, w.c.idx),
        )
        found = yield statement, self._thread_params(tenant, thread_id)
        early: dict[tuple[str, bytes], list[PendingWrite]] = {}
        for namespace, checkpoint_id, *write in found.rows:
            early.setdefault((namespace, bytes(checkpoint_id)), []).append(_write(write))
        return [(ns, id_text(cid), tuple(writes)) for (ns, cid), writes in early.items()]

    def _history(self, op: ops.ReadChannelHistory) -> Plan:
        """`ReadChannelHistory`: the ancestry a page at a time (`_history_sql`, pages of
        `ops.HISTORY_PAGES`), then each seed's checkpoint read as `get` reads it; None when the
        parents loop or a seed's value is not there (the paged walk reports or skips them)."""
        c = self.tables.checkpoints
        key = {"tenant": op.tenant, "thread_id": op.thread_id, "namespace": op.namespace}
        start: bytes | None
        if op.checkpoint_id is None:
            found = yield (
                self._cached(
                    "newest id",
                    select(c.c.checkpoint_id)
                    .where(self._space_where(c))
                    .order_by(c.c.checkpoint_id.desc())
                    .limit(1),
                ),
                key,
            )
            start = bytes(found.rows[0][0]) if found.rows else None
        else:
            start = id_bytes(op.checkpoint_id)
        if start is None:
            return {ch: ChannelHistory() for ch in op.channels}
        walk = AncestorWalk(op.thread_id, op.channels, id_text(start))
        wanted = set(op.channels)
        maps: dict[str, dict[str, Any]] = {}

        def mapping(text: str) -> dict[str, Any]:
            found = maps.get(text)
            if found is None:
                found = maps[text] = json.loads(text)
            return found

        for page in count():
            limit = ops.HISTORY_PAGES[min(page, len(ops.HISTORY_PAGES) - 1)]
            found = yield self._history_page, {**key, "start": start, "limit": limit, "own": page}
            chain: dict[int, tuple[bytes, Any, str, str, list[Any]]] = {}
            for depth, cid, parent, versions, refs, *write in found.rows:
                if depth not in chain:
                    chain[depth] = (bytes(cid), parent, versions, refs, [])
                if write[0] is not None and write[2] in wanted:
                    chain[depth][4].append(write)  # parsed only if walked
            walked = list(chain.values())[1 if page == 0 else 0 :]  # not the checkpoint itself
            start = chain[0][1] if page == 0 and chain else None
            for cid, parent, versions, refs, stored in walked:
                own = sorted(map(_write, stored), key=lambda w: (w.task_path, w.task_id, w.idx))
                try:
                    walk.visit(id_text(cid), own, _names_value(mapping(versions), mapping(refs)))
                except NotFound:
                    return None  # parents that loop: the paged walk reports it
                if walk.done:
                    break
                start = parent
            if walk.done or start is None or len(chain) <= limit:
                break  # every channel's value found, or no ancestor left to read
            start = bytes(start)
        read: dict[str, Checkpoint | None] = {}
        for seed in set(walk.seeds.values()):
            at = ops.GetCheckpoint(op.tenant, op.thread_id, op.namespace, seed)
            read[seed] = yield from self.get(at, None, None)
        return walk.result_from(read)  # None: a value that does not rebuild (see _names_value)

    def _stats(self, tenant: str, thread_id: str | None) -> Plan:
        t, c, v, w = (
            self.tables.threads,
            self.tables.checkpoints,
            self.tables.values,
            self.tables.writes,
        )
        params: dict[str, Any] = {"tenant": tenant}
        if thread_id is not None:
            params["thread_id"] = thread_id

        def where(table: Table) -> list[Any]:
            out = [table.c.tenant == bindparam("tenant")]
            if thread_id is not None:
                out.append(table.c.thread_id == bindparam("thread_id"))
            return out

        zero = literal(0)
        statement = select(
            select(func.count()).select_from(t).where(*where(t)).scalar_subquery(),
            select(func.count()).select_from(c).where(*where(c)).scalar_subquery(),
            select(
                func.coalesce(
                    func.sum(
                        func.length(c.c.body)
                        + func.length(c.c.metadata)
                        + func.length(c.c.versions)
                    ),
                    zero,
                )
            )
            .where(*where(c))
            .scalar_subquery(),
            select(func.count()).select_from(v).where(*where(v)).scalar_subquery(),
            select(func.coalesce(func.sum(v.c.size), zero)).where(*where(v)).scalar_subquery(),
            select(func.count()).select_from(w).where(*where(w)).scalar_subquery(),
            select(func.coalesce(func.sum(func.length(w.c.data)), zero))
            .where(*where(w))
            .scalar_subquery(),
        )
        found = yield self._cached(("stats", thread_id is None), statement), params
        threads, checkpoints, cbytes, blobs, vbytes, writes, wbytes = found.rows[0]
        return StorageStats(
            threads=int(threads),
            checkpoints=int(checkpoints),
            blobs=int(blobs),
            writes=int(writes),
            checkpoint_bytes=int(cbytes),
            value_bytes=int(vbytes),
            write_bytes=int(wbytes),
        )

    def _cached(self, key: Any, statement: Any) -> Any:
        return self._cache.setdefault(key, statement)

    # Thread-level operations.

    def _thread_params(self, tenant: str, thread_id: str) -> dict[str, Any]:
        return {"tenant": tenant, "thread_id": thread_id}

    def _thread_where(self, table: Table) -> ColumnElement[bool]:
        return and_(
            table.c.tenant == bindparam("tenant"), table.c.thread_id == bindparam("thread_id")
        )

    def _delete_thread(self, tenant: str, thread_id: str) -> Plan:
        c = self.tables.checkpoints
        key = self._thread_params(tenant, thread_id)
        count = yield (
            self._cached(
                "count thread", select(func.count()).select_from(c).where(self._thread_where(c))
            ),
            key,
        )
        for table in (self.tables.writes, self.tables.values, c, self.tables.threads):
            yield (
                self._cached(
                    ("delete thread", table.name), delete(table).where(self._thread_where(table))
                ),
                key,
            )
        yield from self._journal.delete_thread(tenant, thread_id)
        return int(count.scalar())

    # Erasure (see `memfold.erase`).

    def _find_threads(self, tenant: str, user_id: str) -> Plan:
        c = self.tables.checkpoints
        statement = self._cached(
            "user threads",
            select(c.c.thread_id)
            .distinct()
            .where(c.c.tenant == bindparam("tenant"), user_where(c.c.metadata, self.dialect))
            .order_by(c.c.thread_id),
        )
        found = yield statement, {"tenant": tenant, **user_params(user_id)}
        return [row[0] for row in found.rows]

    def _erase(self, op: EraseSubject) -> Plan:
        # Tombstones first; then each thread row is locked before its rows are counted and
        # deleted, so a concurrent put either commits first (and goes too) or is refused.
        if not op.dry_run:
            yield from self._tombstones.place(op.tenant, op.tombstones)
        tables = self.tables
        scopes: list[str | None] = [None] if op.whole_tenant else list(op.thread_ids)
        total = ErasureCounts()
        for thread_id in scopes:
            whole = thread_id is None
            key = (
                {"tenant": op.tenant}
                if thread_id is None
                else self._thread_params(op.tenant, thread_id)
            )

            def rows(table: Table, whole: bool = whole) -> ColumnElement[bool]:
                return table.c.tenant == bindparam("tenant") if whole else self._thread_where(table)

            lock = select(tables.threads.c.thread_id).where(rows(tables.threads))
            yield self._cached(("erase lock", whole), lock.with_for_update()), key
            stats = yield from self._stats(op.tenant, thread_id)
            journal = select(func.count()).select_from(tables.journal)
            found = yield (
                self._cached(("erase journal", whole), journal.where(rows(tables.journal))),
                key,
            )
            counts = ErasureCounts(
                checkpoint_threads=stats.threads,
                checkpoints=stats.checkpoints,
                checkpoint_writes=stats.writes,
                checkpoint_blobs=stats.blobs,
                journal_entries=int(found.scalar()),
            )
            total += counts
            if op.dry_run or not counts.total:
                continue
            for table in (
                tables.writes,
                tables.values,
                tables.checkpoints,
                tables.threads,
                tables.journal,
            ):
                yield (
                    self._cached(("erase", table.name, whole), delete(table).where(rows(table))),
                    key,
                )
        return total

    def _get_ttl_plan(self, tenant: str, thread_id: str) -> Plan:
        """A thread's own TTL (None: none, or no such thread)."""
        ttl = (yield self._get_ttl, self._thread_params(tenant, thread_id)).scalar()
        return None if ttl is None else float(ttl)

    def _ttl(self, tenant: str, thread_id: str, ttl: float | None) -> Plan:
        found = yield (
            self._set_ttl,
            {
                **self._thread_params(tenant, thread_id),
                "ttl": ttl,
                "ttl_us": None if ttl is None else ttl * 1_000_000,
            },
        )
        return found.rowcount > 0

    def _release_plan(self, tenant: str, thread_id: str, writer: str) -> Plan:
        found = yield self._release, {**self._thread_params(tenant, thread_id), "writer": writer}
        return found.rowcount > 0

    def _copy(self, op: ops.CopyCheckpointThread) -> Plan:
        t, c = self.tables.threads, self.tables.checkpoints
        source = self._thread_params(op.tenant, op.source)
        exists = yield (
            self._cached("thread exists", select(t.c.thread_id).where(self._thread_where(t))),
            source,
        )
        if not exists.rows or op.source == op.target:
            return 0
        target = self._thread_params(op.tenant, op.target)
        count = self._cached(
            "count thread", select(func.count()).select_from(c).where(self._thread_where(c))
        )
        if (yield count, target).scalar():
            raise Conflict(
                f"thread {op.target!r} already has checkpoints: copy into a new thread id, or "
                "delete_thread the target first"
            )
        for table in (self.tables.writes, self.tables.values, c, t):
            yield (
                self._cached(
                    ("delete thread", table.name), delete(table).where(self._thread_where(table))
                ),
                target,
            )
        copied = 0
        for table in (c, self.tables.values, self.tables.writes):
            names = list([col.name for col in table.c])
            columns = [
                bindparam("target", type_=String) if n == "thread_id" else table.c[n] for n in names
            ]
            statement = self._cached(
                ("copy", table.name),
                insert(table).from_select(names, select(*columns).where(self._thread_where(table))),
            )
            found = yield statement, {**source, "target": op.target}
            if table is c:
                copied = found.rowcount
        yield (
            self._ensure_thread,
            {"tenant": op.tenant, "thread_id": op.target, "now": to_us(op.now)},
        )
        yield from self._journal.copy_thread(op.tenant, op.source, op.target)
        return copied

    # Retention.

    def _load(self, tenant: str, thread_id: str, namespace: str) -> Plan:
        c, v, w = self.tables.checkpoints, self.tables.values, self.tables.writes
        key = {"tenant": tenant, "thread_id": thread_id, "namespace": namespace}
        found = yield (
            self._cached(
                "load checkpoints",
                select(c.c.checkpoint_id, c.c.versions, c.c.refs, c.c.created_us)
                .where(self._space_where(c))
                .order_by(c.c.checkpoint_id),
            ),
            key,
        )
        records = {
            id_text(cid): (json.loads(versions), json.loads(refs), int(created))
            for cid, versions, refs, created in found.rows
        }
        found = yield (
            self._cached(
                "load values",
                select(
                    v.c.channel, v.c.version, v.c.owner, v.c.kind, v.c.base_version, v.c.base_owner
                ).where(self._space_where(v)),
            ),
            key,
        )
        rows = {}
        for channel, version, owner, kind, base_version, base_owner in found.rows:
            stored = StoredBlob(
                channel,
                version_of(version),
                kind,
                b"",
                owner=owner,
                base_version=None if base_version is None else version_of(base_version),
                base_owner=base_owner,
            )
            rows[(channel, version, owner)] = stored
        found = yield (
            self._cached(
                "load writes",
                select(w.c.checkpoint_id, func.count())
                .where(self._space_where(w))
                .group_by(w.c.checkpoint_id),
            ),
            key,
        )
        writes = {id_text(cid): int(n) for cid, n in found.rows}
        return _Space(list(records), records, rows, writes)

    def _lineage(self, key: dict[str, str]) -> Plan:
        """Each checkpoint of a namespace: its parent and (when it names delta channels) its
        metadata, for `spare_history`."""
        c = self.tables.checkpoints
        found = yield (
            self._cached(
                "load lineage",
                select(c.c.checkpoint_id, c.c.parent_id, c.c.metadata).where(self._space_where(c)),
            ),
            key,
        )
        return {
            id_text(cid): (
                None if parent is None else id_text(parent),
                json.loads(metadata) if "delta_" in metadata else {},
            )
            for cid, parent, metadata in found.rows
        }

    def _drop(
        self, key: dict[str, str], space: _Space, doomed: Iterable[str], removed: _Removed
    ) -> Plan:
        """Remove checkpoints and their writes, then every value row no checkpoint needs."""
        gone = set(doomed) & space.records.keys()
        if not gone:
            return
        c, w = self.tables.checkpoints, self.tables.writes
        params = [{**key, "checkpoint_id": id_bytes(cid)} for cid in sorted(gone)]
        yield self.puts.unshare, params
        for table in (w, c):
            yield (
                self._cached(
                    ("drop", table.name),
                    delete(table).where(
                        self._space_where(table),
                        table.c.checkpoint_id == bindparam("checkpoint_id"),
                    ),
                ),
                params,
            )
        for cid in gone:
            del space.records[cid]
            removed.writes += space.writes.pop(cid, 0)
        space.ids = [i for i in space.ids if i not in gone]
        removed.checkpoints += len(gone)
        yield self._new_stamp, {**key, "stamp": new_stamp()}
        yield from self._collect(key, space, removed)

    def _collect(self, key: dict[str, str], space: _Space, removed: _Removed) -> Plan:
        """Drop every value row no checkpoint of the namespace reads, directly or in a chain."""
        v = self.tables.values
        live = reachable(space.roots(), space.rows.get)
        dead = [k for k in space.rows if k not in live]
        if dead:
            yield (
                self._cached(
                    "drop value",
                    delete(v).where(
                        self._space_where(v),
                        v.c.channel == bindparam("channel"),
                        v.c.version == bindparam("version"),
                        v.c.owner == bindparam("owner"),
                    ),
                ),
                [{**key, "channel": k[0], "version": k[1], "owner": k[2]} for k in dead],
            )
            for k in dead:
                del space.rows[k]
            yield self._new_stamp, {**key, "stamp": new_stamp()}
        removed.blobs += len(dead)

    def _namespaces(self, tenant: str, thread_id: str) -> Plan:
        c = self.tables.checkpoints
        found = yield (
            self._cached(
                "namespaces", select(c.c.namespace).distinct().where(self._thread_where(c))
            ),
            self._thread_params(tenant, thread_id),
        )
        return sorted(r[0] for r in found.rows)

    def _tidy(self, tenant: str, thread_id: str) -> Plan:
        """Forget a thread once none of its namespaces holds a checkpoint."""
        c = self.tables.checkpoints
        key = self._thread_params(tenant, thread_id)
        count = yield (
            self._cached(
                "count thread", select(func.count()).select_from(c).where(self._thread_where(c))
            ),
            key,
        )
        if not count.scalar():
            yield from self._delete_thread(tenant, thread_id)

    def _delete_runs(self, tenant: str, run_ids: tuple[str, ...]) -> Plan:
        c = self.tables.checkpoints
        doomed: dict[tuple[str, str], set[str]] = {}
        statement = self._cached(
            "by run",
            select(c.c.thread_id, c.c.namespace, c.c.checkpoint_id).where(
                c.c.tenant == bindparam("tenant"), c.c.run_id == bindparam("run_id")
            ),
        )
        for run_id in run_ids:
            found = yield statement, {"tenant": tenant, "run_id": run_id}
            for thread_id, namespace, cid in found.rows:
                doomed.setdefault((thread_id, namespace), set()).add(id_text(cid))
        removed = _Removed()
        for (thread_id, namespace), ids in sorted(doomed.items()):
            space = yield from self._load(tenant, thread_id, namespace)
            key = {"tenant": tenant, "thread_id": thread_id, "namespace": namespace}
            yield from self._drop(key, space, ids, removed)
        for thread_id in sorted({t for t, _ in doomed}):
            yield from self._tidy(tenant, thread_id)
        return removed.checkpoints

    def _prune(self, tenant: str, thread_ids: tuple[str, ...], keep_latest: bool) -> Plan:
        removed = _Removed()
        for thread_id in thread_ids:
            if not keep_latest:
                removed.checkpoints += yield from self._delete_thread(tenant, thread_id)
                continue
            before = removed.checkpoints
            for namespace in (yield from self._namespaces(tenant, thread_id)):
                space = yield from self._load(tenant, thread_id, namespace)
                key = {"tenant": tenant, "thread_id": thread_id, "namespace": namespace}
                if len(space.ids) > 1:
                    lineage = yield from self._lineage(key)
                    yield from self._drop(
                        key, space, spare_history(set(space.ids[:-1]), lineage), removed
                    )
            if removed.checkpoints > before:
                yield from self._tidy(tenant, thread_id)
        return removed.checkpoints

    def _sweep(self, op: ops.SweepCheckpoints) -> Plan:
        t, c = self.tables.threads, self.tables.checkpoints
        policy, now = op.policy, to_us(op.now)
        removed = _Removed()
        deleted: list[tuple[str, str]] = []
        params: dict[str, Any] = {"now": float(now)}
        tenant_t: list[Any] = []
        tenant_c: list[Any] = []
        if op.tenant is not None:
            params["tenant"] = op.tenant
            tenant_t = [t.c.tenant == bindparam("tenant")]
            tenant_c = [c.c.tenant == bindparam("tenant")]
        # 1. Whole threads past their own or the default TTL: found by the indexed lower bounds
        # of expiry and idle time, then checked against the exact last write.
        last = func.coalesce(t.c.last_us, t.c.updated_us)
        expired = [t.c.expires_us <= bindparam("now")]
        exact = [t.c.ttl * 1_000_000 + last <= bindparam("now")]
        if policy.ttl_seconds is not None:
            params["idle"] = now - round(policy.ttl_seconds * 1_000_000)
            expired.append(and_(t.c.ttl.is_(None), t.c.updated_us <= bindparam("idle")))
            exact.append(and_(t.c.ttl.is_(None), last <= bindparam("idle")))
        shape = (op.tenant is None, policy.ttl_seconds is None)
        found = yield (
            self._cached(
                ("expired", shape),
                select(t.c.tenant, t.c.thread_id).where(*tenant_t, or_(*expired), or_(*exact)),
            ),
            params,
        )
        for tenant, thread_id in sorted(found.rows):
            stats = yield from self._stats(tenant, thread_id)
            yield from self._delete_thread(tenant, thread_id)
            deleted.append((tenant, thread_id))
            removed.checkpoints += stats.checkpoints
            removed.blobs += stats.blobs
            removed.writes += stats.writes
        # 2. Namespaces over keep_last, or holding checkpoints older than max_age.
        spaces: set[tuple[str, str, str]] = set()
        if policy.keep_last is not None:
            found = yield (
                self._cached(
                    ("over", shape[0]),
                    select(c.c.tenant, c.c.thread_id, c.c.namespace)
                    .where(*tenant_c)
                    .group_by(c.c.tenant, c.c.thread_id, c.c.namespace)
                    .having(func.count() > bindparam("keep", type_=Integer)),
                ),
                {**params, "keep": policy.keep_last},
            )
            spaces.update(found.rows)
        cutoff = None
        if policy.max_age_seconds is not None:
            cutoff = now - round(policy.max_age_seconds * 1_000_000)
            found = yield (
                self._cached(
                    ("old", shape[0]),
                    select(c.c.tenant, c.c.thread_id, c.c.namespace)
                    .distinct()
                    .where(*tenant_c, c.c.created_us < bindparam("cutoff")),
                ),
                {**params, "cutoff": cutoff},
            )
            spaces.update(found.rows)
        # 3. Threads where a re-put checkpoint may have left value rows behind.
        found = yield (
            self._cached(
                ("dirty", shape[0]),
                select(t.c.tenant, t.c.thread_id).where(*tenant_t, t.c.dirty > 0),
            ),
            params,
        )
        dirty = sorted(found.rows)
        for tenant, thread_id in dirty:
            for namespace in (yield from self._namespaces(tenant, thread_id)):
                spaces.add((tenant, thread_id, namespace))
        for tenant, thread_id, namespace in sorted(spaces):
            key = {"tenant": tenant, "thread_id": thread_id, "namespace": namespace}
            space = yield from self._load(tenant, thread_id, namespace)
            doomed: set[str] = set()
            if policy.keep_last is not None:
                doomed.update(space.ids[: -policy.keep_last])
            if cutoff is not None:
                doomed.update(cid for cid in space.ids[:-1] if space.records[cid][2] < cutoff)
            if doomed:
                doomed = spare_history(doomed, (yield from self._lineage(key)))
            if doomed & space.records.keys():
                yield from self._drop(key, space, doomed, removed)
            else:
                yield from self._collect(key, space, removed)
        if dirty:
            yield (
                self._cached(
                    "clean",
                    update(t).where(self._thread_where(t)).values(dirty=0),
                ),
                [self._thread_params(tenant, thread_id) for tenant, thread_id in dirty],
            )
        counts = SweepResult(len(deleted), removed.checkpoints, removed.blobs, removed.writes)
        return ops.CheckpointSweep(counts, tuple(deleted))


# A read's delta chains: the deepest root of each chain (roots of one thread share chains),
# then that chain's rows up to it, so each row comes back once however many roots need it;
# the other roots (no chain: plain values) are read by key.
_LISTED = "snapshot_version IS NOT NULL"
_NOT_LISTED = "x.snapshot_version IS NULL"
_CHAIN_GROUP = "{0}.thread_id, {0}.namespace, {0}.channel, {0}.snapshot_version, {0}.snapshot_owner"
_CHAIN_TIPS = (
    "{0}.thread_id AS t, {0}.namespace AS n, {0}.channel AS c, {0}.snapshot_version AS sv, "
    "{0}.snapshot_owner AS so, MAX({0}.depth) AS d"
)
_CHAIN_ROWS = (
    "x.tenant = :tenant AND x.thread_id = g.t AND x.namespace = g.n AND x.channel = g.c "
    "AND x.snapshot_version = g.sv AND x.snapshot_owner = g.so AND x.depth <= g.d"
)


def _kind(value: JSON) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "text"


def _parse_rows(
    found: Iterable[Any],
    into: dict[tuple[str, str], dict[BlobKey, StoredBlob]],
    parsed: ParsedRows,
    seen: dict[bytes, bytes] | None = None,
) -> None:
    """Parse value rows (`VALUE_COLUMNS`) into ``into`` (through ``parsed``), by thread
    namespace and key, skipping the rows already there (``seen``: see `decompress`)."""
    for row in found:
        space = into.setdefault((row[0], row[1]), {})
        if (row[2], row[3], row[4]) not in space:
            stored = parsed.parse(row, seen)[2]
            space[stored.key] = stored


def _names_value(versions: dict[str, Any], refs: dict[str, Any]) -> Callable[[str], bool]:
    """Whether a checkpoint's versions and refs name a value of a channel (`NO_VALUE` names
    none; a row they name may still be missing)."""
    return lambda channel: channel in versions and refs.get(channel, "") != NO_VALUE


def _write(row: Any, seen: dict[bytes, bytes] | None = None) -> PendingWrite:
    task_id, idx, channel, tag, data, task_path, codec = row
    value = Blob(tag, decompress(bytes(data), codec, seen))
    return PendingWrite(id_text(task_id), idx, channel, value, task_path)
