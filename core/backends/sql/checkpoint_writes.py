"""Checkpoint puts and pending writes as plans (see `memfold.backends.sql.plans`), each in a fast
form that reads nothing and a full form that reads under the thread's lock.

- A *fast put* continues from the checkpoint this store put last in the namespace (see
  `memfold.backends.sql.checkpoint_heads`): its rows are planned from memory, and one write
  (on PostgreSQL a single statement) stores them if the thread's row still carries the
  remembered stamp, the writer still holds the lease, and neither the checkpoint id nor a new
  row key is taken; else nothing is written and the store runs the full put.
- A *full put* locks the thread's row (``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL, the
  runner's ``BEGIN IMMEDIATE`` on SQLite; the row is created on the thread's first write),
  reading in the same statement the newest checkpoint id, the parent's versions and refs and
  whether the checkpoint exists; then the value rows planning needs; then it checks the lease
  (a nested run's first checkpoint against the enclosing checkpoint it starts from: see
  `memfold.checkpoint_model.Lease`) and writes as the fast put does.
- *Fast pending writes* are stored without writing the thread's row when the thread's last
  write is recorded within the last minute and the writer's lease (if it has one) has more
  than half of its time left: on PostgreSQL in one statement, whose ``FOR KEY SHARE`` read of
  the row waits for an erasure but not for a put of the same thread; on SQLite in one statement
  too when they are up to 8 writes with a ``idx >= 0`` (an insert that stores none of them
  leaves it to the full form to tell a failed check from writes stored already). Otherwise the
  *full* form
  locks the row, checks the lease (handing it over, or leaving it alone for a checkpoint not
  stored yet), renews it and records the write.

A put's value row whose payload a pending write of the parent checkpoint holds byte for byte
(a list write that the saver handed over as `memfold.checkpoint_deltas.pack_sequence`) stores
that write's key instead of a copy, in the same insert (see
`memfold.backends.sql.checkpoint_schema`); `CheckpointWrites.unshare` copies it back before
the write goes.

Every put writes a new stamp into the thread's row; a put or a lease renewal also records the
thread's last write (``last_us``), renewing the indexed lower bounds of it and of the thread's
expiry (``updated_us``, ``expires_us``) only once they lag by
`memfold.backends.sql.checkpoint_schema.REFRESH_AFTER_US`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ClauseElement, Dialect, and_, bindparam, case, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from memfold import checkpoint_ops as ops
from memfold.backends.sql.checkpoint_heads import Head, head_after, new_stamp
from memfold.backends.sql.checkpoint_rows import (
    EMPTY_VALUE,
    NO_VALUE,
    compress,
    from_us,
    has_row,
    id_bytes,
    id_text,
    parse_value,
    row_params,
    to_us,
)
from memfold.backends.sql.checkpoint_schema import REFRESH_AFTER_US, CheckpointTables
from memfold.backends.sql.plans import Plan
from memfold.checkpoint_deltas import (
    BlobKey,
    DeltaPolicy,
    ListDigests,
    StoredBlob,
    channel_key,
    plan_put,
    version_key,
)
from memfold.checkpoint_model import SequenceBlob, Version
from memfold.checkpoints import claim_lease, lease_origin
from memfold.errors import Conflict

__all__ = ["CheckpointWrites", "FastPut", "PutDone", "roots_params"]

_SHARE_FROM = 128
"""A value row shares a pending write's payload (see
`memfold.backends.sql.checkpoint_schema`) only from this many stored bytes: a shorter one costs
less than the write's key."""

_RECORDED_WITHIN = 60_000_000
"""Pending writes record the thread's last write (for its TTL) when the recorded one is older
than this many microseconds (one minute)."""

_INLINE_ROWS = 8
"""PostgreSQL: up to this many value rows or writes travel as one parameter per column value
(a statement per row count, cheap for the driver to send); more as one array per column.
SQLite: up to this many new pending writes are stored in one statement."""

# Value row columns after the thread namespace key, with their PostgreSQL types.
_VALUE_ARRAYS = (
    ("channel", "text"),
    ("version", "text"),
    ("owner", "text"),
    ("kind", "text"),
    ("digest", "bytea"),
    ("tag", "text"),
    ("data", "bytea"),
    ("size", "bigint"),
    ("length", "integer"),
    ("depth", "integer"),
    ("base_version", "text"),
    ("base_owner", "text"),
    ("snapshot_version", "text"),
    ("snapshot_owner", "text"),
    ("snapshot_length", "integer"),
    ("codec", "text"),
)
_LINKED_VALUES = (*_VALUE_ARRAYS, ("link_parent", "bytea"))
"""A put's value rows, each with the checkpoint whose pending write it may share."""
_WRITE_ARRAYS = (
    ("task_id", "bytea"),
    ("idx", "integer"),
    ("channel", "text"),
    ("tag", "text"),
    ("data", "bytea"),
    ("task_path", "text"),
    ("codec", "text"),
)
_REPLACED = tuple(name for name, _ in _WRITE_ARRAYS if name not in ("task_id", "idx"))
"""What a special write (negative ``idx``) written again replaces: every column outside the key,
its codec too."""
_CHECKPOINT = (
    "checkpoint_id",
    "parent_id",
    "created_us",
    "run_id",
    "metadata",
    "body_tag",
    "body",
    "versions",
    "refs",
    "body_codec",
)


@dataclass(frozen=True, slots=True)
class FastPut:
    """A fast put ready to run: its plan (True if it stored the checkpoint), the stamp it
    writes, and the head it leaves."""

    plan: Callable[[], Plan]
    stamp: int
    head: Head


@dataclass(frozen=True, slots=True)
class PutDone:
    """What a full put found and left: the thread's stamp under the lock, the stamp it wrote,
    and the namespace's new head."""

    seen: int | None
    stamp: int
    head: Head


class CheckpointWrites:
    """The put and pending-write plans on one set of tables and one SQL dialect.

    Args:
        tables: the checkpoint tables.
        dialect: the database's dialect.
        values_by_key: the statement reading value rows by key (``:tenant``, ``:roots``).
    """

    def __init__(
        self, tables: CheckpointTables, dialect: Dialect, values_by_key: ClauseElement
    ) -> None:
        self.tables = tables
        self.postgres = dialect.name == "postgresql"
        self._quote = dialect.identifier_preparer
        self._values_by_key = values_by_key
        self._cache: dict[Any, ClauseElement] = {}
        t, c, w = tables.threads, tables.checkpoints, tables.writes
        ins = postgresql.insert if self.postgres else sqlite.insert
        thread_key = and_(
            t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id")
        )
        space = and_(
            c.c.tenant == bindparam("tenant"),
            c.c.thread_id == bindparam("thread_id"),
            c.c.namespace == bindparam("namespace"),
        )
        self._create_thread = (
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
        head = select(c.c.checkpoint_id).where(space).order_by(c.c.checkpoint_id.desc()).limit(1)

        def of(column: str, checkpoint: str) -> Any:
            found = select(c.c[column]).where(space, c.c.checkpoint_id == bindparam(checkpoint))
            return found.scalar_subquery()

        # The row's own columns come from the row as locked; the subqueries from the
        # statement's snapshot, taken before any wait for the lock: the stamp read both ways
        # tells whether a writer committed in between (then the read runs again).
        self._read_thread = (
            select(
                t.c.holder,
                t.c.lease_until_us,
                t.c.stamp,
                select(t.c.stamp).where(thread_key).scalar_subquery(),
                head.scalar_subquery(),
                of("versions", "parent_id"),
                of("refs", "parent_id"),
                of("checkpoint_id", "checkpoint_id"),
            )
            .where(thread_key)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE; SQLite: BEGIN IMMEDIATE
        )
        # Pending writes' full form: the lock (created if absent) and the lease's facts.
        claim = ins(t).values(
            tenant=bindparam("tenant"),
            thread_id=bindparam("thread_id"),
            updated_us=bindparam("now"),
            last_us=bindparam("now"),
            dirty=0,
        )
        self._lock_thread = claim.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.thread_id],
            set_={"last_us": claim.excluded.last_us},
        ).returning(t.c.holder, t.c.lease_until_us)
        self._write_info = select(head.scalar_subquery(), of("checkpoint_id", "checkpoint_id"))
        lags = t.c.updated_us < bindparam("stale")
        self._touch = (
            update(t)
            .where(thread_key)
            .values(
                last_us=bindparam("now"),
                updated_us=case((lags, bindparam("now")), else_=t.c.updated_us),
                expires_us=case(
                    (lags, t.c.ttl * 1_000_000 + bindparam("now_f")), else_=t.c.expires_us
                ),
            )
        )
        self._renew = self._touch.values(
            holder=bindparam("writer"), lease_until_us=bindparam("until")
        )
        write_insert = ins(w).values({col.name: bindparam(col.name) for col in w.c})
        self._insert_write = write_insert.on_conflict_do_nothing()
        self._replace_write = write_insert.on_conflict_do_update(
            index_elements=[w.c[n] for n in ("tenant", "thread_id", "namespace")]
            + [w.c.checkpoint_id, w.c.task_id, w.c.idx],
            set_={n: write_insert.excluded[n] for n in _REPLACED},
        )
        recent = t.c.updated_us >= bindparam("recent")
        lease_live = and_(
            t.c.holder == bindparam("writer"), t.c.lease_until_us >= bindparam("fresh")
        )
        self._lease_check = select(t.c.thread_id).where(thread_key, recent, lease_live)
        self._thread_check = select(t.c.thread_id).where(thread_key, recent)
        # Copies the pending writes of a checkpoint (``:checkpoint_id``) back into the value
        # rows sharing their payload, before the writes are removed or replaced.
        v = tables.values

        def shared(column: str) -> Any:
            return (
                select(w.c[column])
                .where(
                    w.c.tenant == v.c.tenant,
                    w.c.thread_id == v.c.thread_id,
                    w.c.namespace == v.c.namespace,
                    w.c.checkpoint_id == v.c.link_checkpoint,
                    w.c.task_id == v.c.link_task,
                    w.c.idx == v.c.link_idx,
                )
                .scalar_subquery()
            )

        self.unshare = (
            update(v)
            .where(
                v.c.tenant == bindparam("tenant"),
                v.c.thread_id == bindparam("thread_id"),
                v.c.namespace == bindparam("namespace"),
                v.c.link_checkpoint == bindparam("checkpoint_id"),
            )
            .values(
                data=shared("data"),
                codec=shared("codec"),
                link_checkpoint=None,
                link_task=None,
                link_idx=None,
            )
        )

    @property
    def prepared(self) -> list[ClauseElement]:
        """The statements built once, for a runner to compile once."""
        return [s for s in vars(self).values() if isinstance(s, ClauseElement)]

    def _cached(self, key: Any, build: Callable[[], ClauseElement]) -> ClauseElement:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build()
        return found

    # Puts.

    def put_fast(
        self, op: ops.PutCheckpoint, policy: DeltaPolicy, stamp: int | None, head: Head | None
    ) -> FastPut | None:
        """The fast put of ``op`` from the remembered ``stamp`` and ``head`` (None: ``op``
        does not continue from that head, or a row it extends is not remembered)."""
        if stamp is None or head is None or op.parent_id != head.checkpoint_id:
            return None
        bases = head.bases(op.new_values)
        if bases is None:
            return None
        digests = ListDigests(head.lists.values())
        try:
            rows, refs = _valued(
                op.versions,
                *plan_put(
                    op.checkpoint_id, op.versions, op.new_values, (head.versions, head.refs),
                    bases.get, policy, digests,
                ),
            )  # fmt: skip
        except Conflict:  # the full put reports it, with what is stored
            return None
        written = new_stamp()
        known = {**head.rows, **_keyed(rows)}
        after = head_after(op, refs, known, head, digests.made)
        args = self._put_params(op, refs, rows, stamp, written, existing=False)

        def plan() -> Plan:
            done: bool = yield from self._write_put(op, rows, args, fast=True, existing=False)
            return done

        return FastPut(plan, written, after)

    def put(
        self, op: ops.PutCheckpoint, policy: DeltaPolicy, head: Head | None, stamp: int | None
    ) -> Plan:
        """The full put of ``op``; returns a `PutDone` (``head``: the namespace's remembered
        head, whose rows spare a read when it is the parent, and whose payload the new head
        builds on if the thread still carries the remembered ``stamp``)."""
        key = {"tenant": op.tenant, "thread_id": op.thread_id, "namespace": op.namespace}
        now = to_us(op.created_at)
        params = {
            **key,
            "parent_id": b"" if op.parent_id is None else id_bytes(op.parent_id),
            "checkpoint_id": id_bytes(op.checkpoint_id),
        }
        while True:
            found = yield self._read_thread, params
            if not found.rows:  # the thread's first write
                yield self._create_thread, {**key, "now": now}
                continue
            holder, until, seen, before, newest, parent_versions, parent_refs, existing = (
                found.rows[0]
            )
            if seen == before:
                break
        continues = op.parent_id is not None and newest is not None
        continues = continues and op.parent_id == id_text(newest)
        origin = lease_origin(op)
        if origin is not None:  # a nested run's first checkpoint: see Lease
            enclosing_key = {**key, "namespace": origin[0], "checkpoint_id": id_bytes(origin[1])}
            info = yield self._write_info, enclosing_key
            enclosing = info.rows[0][0]
            continues = enclosing is not None and id_text(enclosing) == origin[1]
        if op.lease is not None:
            claim_lease(
                op.thread_id,
                holder,
                None if until is None else from_us(until),
                op.lease,
                op.created_at,
                continues_head=continues,
            )
        parent = None
        if parent_versions is not None:
            parent = (json.loads(parent_versions), json.loads(parent_refs))
        known: dict[BlobKey, StoredBlob] = {}
        if head is not None and parent is not None and op.parent_id == head.checkpoint_id:
            known.update(head.rows)
        if op.new_values:
            pv, pr = parent if parent is not None else ({}, {})
            wanted: list[BlobKey] = []
            for channel, version, value in op.new_values:
                vk = version_key(version)
                wanted += [(channel, vk, ""), (channel, vk, op.checkpoint_id)]
                if isinstance(value, SequenceBlob) and channel in pv:
                    wanted.append(channel_key(channel, pv[channel], pr))
            roots = [(op.thread_id, op.namespace, k) for k in dict.fromkeys(wanted)]
            roots = [root for root in roots if has_row(root[2][2])]
            rows = yield self._values_by_key, roots_params(op.tenant, roots)
            known.update({row.key: row for _, _, row in map(parse_value, rows.rows)})
        # The remembered head is the parent as stored only if the thread did not change since.
        parent_head = head if stamp is not None and seen == stamp else None
        if parent_head is not None and parent_head.checkpoint_id != op.parent_id:
            parent_head = None
        digests = ListDigests(() if parent_head is None else parent_head.lists.values())
        new_rows, refs = _valued(
            op.versions,
            *plan_put(
                op.checkpoint_id, op.versions, op.new_values, parent, known.get, policy, digests
            ),
        )
        written = new_stamp()
        args = self._put_params(op, refs, new_rows, seen, written, existing=existing is not None)
        done = yield from self._write_put(
            op, new_rows, args, fast=False, existing=existing is not None
        )
        if not done:  # the row is locked, so this cannot happen
            raise Conflict(f"thread {op.thread_id!r} changed under its lock: retry the put")
        known.update(_keyed(new_rows))
        after = head_after(op, refs, known, parent_head, digests.made)
        return PutDone(seen, written, after)

    def _put_params(
        self,
        op: ops.PutCheckpoint,
        refs: Mapping[str, str],
        rows: list[StoredBlob],
        stamp: int | None,
        written: int,
        existing: bool,
    ) -> dict[str, Any]:
        now = to_us(op.created_at)
        run_id = op.metadata.get("run_id")
        body, body_codec = compress(op.body.data)
        parent = None if op.parent_id is None else id_bytes(op.parent_id)
        params: dict[str, Any] = {
            "tenant": op.tenant,
            "thread_id": op.thread_id,
            "namespace": op.namespace,
            "checkpoint_id": id_bytes(op.checkpoint_id),
            "parent_id": parent,
            "created_us": now,
            "run_id": run_id if isinstance(run_id, str) else None,
            "metadata": op.metadata_json,
            "body_tag": op.body.tag,
            "body": body,
            "body_codec": body_codec,
            "versions": op.versions_json,
            "refs": json.dumps(refs, separators=(",", ":")),
            "stamp": stamp,
            "new_stamp": written,
            "now": now,
            "now_f": float(now),
            "stale": now - REFRESH_AFTER_US,
            "dirty": 1 if existing else 0,
        }
        if op.lease is not None:
            params["writer"] = op.lease.writer
            params["until"] = to_us(op.created_at) + round(op.lease.seconds * 1_000_000)
        if self.postgres:
            rows_params = [self._value_params(row, parent) for row in rows]
            params.update(_rows_params("", _LINKED_VALUES, rows_params))
        return params

    @staticmethod
    def _value_params(row: StoredBlob, parent_id: bytes | None) -> dict[str, Any]:
        """A value row's column values, and the checkpoint (its stored id) whose pending write
        of the same payload it may share (``link_parent``; None: too short to be worth it)."""
        params = row_params(row)
        params["link_parent"] = parent_id if len(params["data"]) >= _SHARE_FROM else None
        return params

    def _write_put(
        self,
        op: ops.PutCheckpoint,
        rows: list[StoredBlob],
        params: dict[str, Any],
        fast: bool,
        existing: bool,
    ) -> Plan:
        """Claim the thread's row (stamp and, when ``fast``, lease and free keys checked),
        then store the rows and the checkpoint; returns whether the claim held."""
        lease = op.lease is not None
        if self.postgres:
            n = _shape(len(rows))
            statement = self._cached(
                ("put", fast, lease, existing, n),
                lambda: self._postgres_put(fast, lease, existing, n),
            )
            found = yield statement, params
            return bool(found.scalar())
        claim = self._cached(("claim", fast, lease), lambda: self._sqlite_claim(fast, lease))
        args = params
        if fast:
            keys = [{"c": r.channel, "v": version_key(r.version), "o": r.owner} for r in rows]
            args = {**params, "keys": json.dumps(keys, separators=(",", ":"))}
        found = yield claim, args
        if found.rowcount != 1:
            return False
        key = {"tenant": op.tenant, "thread_id": op.thread_id, "namespace": op.namespace}
        if rows:
            yield (
                self._insert_value(),
                [{**key, **self._value_params(row, params["parent_id"])} for row in rows],
            )
        yield self._insert_checkpoint(existing), params
        return True

    def _claim_sets(self, table: str, lease: bool) -> str:
        lags = f"{table}.updated_us < :stale"
        sets = [
            "stamp = :new_stamp",
            "last_us = :now",
            f"updated_us = CASE WHEN {lags} THEN :now ELSE {table}.updated_us END",
            f"expires_us = CASE WHEN {lags} THEN {table}.ttl * 1000000 + :now_f "
            f"ELSE {table}.expires_us END",
            f"dirty = {table}.dirty + :dirty",
        ]
        if lease:
            sets += ["holder = :writer", "lease_until_us = :until"]
        return ", ".join(sets)

    def _postgres_put(self, fast: bool, lease: bool, existing: bool, n: int) -> ClauseElement:
        """The whole put as one statement: the claim, then (if it held) the value rows (``n``
        of them, see `_rows_source`) and the checkpoint; returns the claim's row count."""
        t = self._quote.format_table(self.tables.threads)
        c = self._quote.format_table(self.tables.checkpoints)
        v = self._quote.format_table(self.tables.values)
        where = [f"{t}.tenant = :tenant", f"{t}.thread_id = :thread_id"]
        where.append(f"{t}.stamp IS NOT DISTINCT FROM CAST(:stamp AS bigint)")
        if fast:
            if lease:
                where.append(f"{t}.holder = :writer")
            where.append(
                f"NOT EXISTS (SELECT 1 FROM {c} AS c WHERE c.tenant = :tenant AND "
                "c.thread_id = :thread_id AND c.namespace = :namespace AND "
                "c.checkpoint_id = :checkpoint_id)"
            )
            if n:
                keys = _rows_source("", _VALUE_ARRAYS[:3], n)
                where.append(
                    f"NOT EXISTS (SELECT 1 FROM {keys} JOIN {v} AS x ON x.tenant = :tenant "
                    "AND x.thread_id = :thread_id AND x.namespace = :namespace AND "
                    "x.channel = k.channel AND x.version = k.version AND x.owner = k.owner)"
                )
        claim = (
            f"UPDATE {t} SET {self._claim_sets(t, lease)} WHERE {' AND '.join(where)} RETURNING 1"
        )
        names = [name for name, _ in _VALUE_ARRAYS]
        value_rows = (
            f", v AS (INSERT INTO {v} (tenant, thread_id, namespace, {', '.join(names)}, "
            f"link_checkpoint, link_task, link_idx) SELECT :tenant, :thread_id, :namespace, "
            f"{self._shared_values('k', names)} FROM {_rows_source('', _LINKED_VALUES, n)} "
            f"{self._shared_write('k')} WHERE EXISTS (SELECT 1 FROM claim))"
            if n
            else ""
        )
        checkpoint = (
            f"INSERT INTO {c} (tenant, thread_id, namespace, {', '.join(_CHECKPOINT)}) "
            "SELECT :tenant, :thread_id, :namespace, :checkpoint_id, :parent_id, "
            "CAST(:created_us AS bigint), :run_id, :metadata, :body_tag, :body, :versions, "
            ":refs, :body_codec WHERE EXISTS (SELECT 1 FROM claim)"
        )
        if existing:
            checkpoint += (
                " ON CONFLICT (tenant, thread_id, namespace, checkpoint_id) DO UPDATE SET "
                + ", ".join(f"{n} = excluded.{n}" for n in _CHECKPOINT[1:])
            )
        return text(
            f"WITH claim AS ({claim}){value_rows}, c AS ({checkpoint}) SELECT count(*) FROM claim"
        ).execution_options(server_function="put")

    def _sqlite_claim(self, fast: bool, lease: bool) -> ClauseElement:
        """The claim of the thread's row on SQLite (its row count tells whether it held)."""
        t = self._quote.format_table(self.tables.threads)
        c = self._quote.format_table(self.tables.checkpoints)
        v = self._quote.format_table(self.tables.values)
        where = [f"{t}.tenant = :tenant", f"{t}.thread_id = :thread_id", f"{t}.stamp IS :stamp"]
        if fast:
            if lease:
                where.append(f"{t}.holder = :writer")
            where.append(
                f"NOT EXISTS (SELECT 1 FROM {c} AS c WHERE c.tenant = :tenant AND "
                "c.thread_id = :thread_id AND c.namespace = :namespace AND "
                "c.checkpoint_id = :checkpoint_id)"
            )
            where.append(
                f"NOT EXISTS (SELECT 1 FROM json_each(:keys) AS j CROSS JOIN {v} AS x ON "
                "x.tenant = :tenant AND x.thread_id = :thread_id AND x.namespace = :namespace "
                "AND x.channel = json_extract(j.value, '$.c') AND "
                "x.version = json_extract(j.value, '$.v') AND "
                "x.owner = json_extract(j.value, '$.o'))"
            )
        return text(f"UPDATE {t} SET {self._claim_sets(t, lease)} WHERE {' AND '.join(where)}")

    def _insert_value(self) -> ClauseElement:
        """SQLite's insert of one value row (sharing a pending write's payload if it can)."""

        def build() -> ClauseElement:
            v = self._quote.format_table(self.tables.values)
            names = [c.name for c in self.tables.values.c if not c.name.startswith("link_")]
            return text(
                f"INSERT INTO {v} ({', '.join(names)}, link_checkpoint, link_task, link_idx) "
                f"SELECT {self._shared_values('', names)} FROM (SELECT 1) AS k "
                f"{self._shared_write('')}"
            )

        return self._cached("insert value", build)

    def _shared_values(self, source: str, names: list[str]) -> str:
        """The select list of a value row insert from ``source`` (a table alias, or "" for
        bound parameters): the row's columns, with no payload of its own when it shares the
        payload of the pending write ``s`` found by `_shared_write`, whose key it records."""
        field = f"{source}." if source else ":"
        empty = "CAST('' AS bytea)" if self.postgres else "CAST('' AS BLOB)"
        listed = [
            f"CASE WHEN s.task_id IS NULL THEN {field}data ELSE {empty} END"
            if n == "data"
            else f"{field}{n}"
            for n in names
        ]
        return ", ".join([*listed, "s.checkpoint_id", "s.task_id", "s.idx"])

    def _shared_write(self, source: str) -> str:
        """The join finding a pending write of the put's parent (``link_parent``) on the
        row's channel with the row's very payload (writes that a later write may replace,
        with a negative ``idx``, are never shared)."""
        w = self._quote.format_table(self.tables.writes)
        field = f"{source}." if source else ":"
        same_codec = "IS NOT DISTINCT FROM" if self.postgres else "IS"
        found = (
            f"SELECT checkpoint_id, task_id, idx FROM {w} AS w WHERE w.tenant = :tenant "
            "AND w.thread_id = :thread_id AND w.namespace = :namespace "
            f"AND w.checkpoint_id = {field}link_parent AND w.channel = {field}channel "
            f"AND w.idx >= 0 AND w.data = {field}data AND w.codec {same_codec} {field}codec "
            "LIMIT 1"
        )
        if self.postgres:
            return f"LEFT JOIN LATERAL ({found}) AS s ON true"
        return f"LEFT JOIN ({found}) AS s ON 1"

    def _insert_checkpoint(self, existing: bool) -> ClauseElement:
        c = self.tables.checkpoints

        def build() -> ClauseElement:
            names = ("tenant", "thread_id", "namespace", *_CHECKPOINT)
            statement = sqlite.insert(c).values({n: bindparam(n) for n in names})
            if not existing:
                return statement
            return statement.on_conflict_do_update(
                index_elements=[c.c[n] for n in names[:4]],
                set_={n: statement.excluded[n] for n in _CHECKPOINT[1:]},
            )

        return self._cached(("insert checkpoint", existing), build)

    # Pending writes.

    def put_writes_fast(self, op: ops.PutCheckpointWrites) -> tuple[Callable[[], Plan], bool]:
        """The fast pending writes of ``op`` (the plan returns whether they were stored), and
        whether the plan is one statement."""
        kept, replaced = _split_writes(op)
        key = {
            "tenant": op.tenant,
            "thread_id": op.thread_id,
            "namespace": op.namespace,
            "checkpoint_id": id_bytes(op.checkpoint_id),
        }
        lease = op.lease is not None
        if op.replace:  # the full form first copies shared payloads back (see `unshare`)
            return _refused, True
        check: dict[str, Any] = {**key, "recent": to_us(op.written_at) - _RECORDED_WITHIN}
        if op.lease is not None:
            check["writer"] = op.lease.writer
            check["fresh"] = to_us(op.written_at) + round(op.lease.seconds * 500_000)
        if self.postgres:
            params = dict(check)
            params.update(_rows_params("k_", _WRITE_ARRAYS, kept))
            params.update(_rows_params("r_", _WRITE_ARRAYS, replaced))
            counts = (_shape(len(kept)), _shape(len(replaced)))
            statement = self._cached(
                ("writes", lease, counts), lambda: self._postgres_writes(lease, *counts)
            )

            def one() -> Plan:
                found = yield statement, params
                return bool(found.scalar())

            return one, True

        if kept and not replaced and len(kept) <= _INLINE_ROWS:
            args = {**check, **_rows_params("k_", _WRITE_ARRAYS, kept)}
            statement = self._cached(
                ("sqlite writes", lease, len(kept)), lambda: self._sqlite_writes(lease, len(kept))
            )

            def single() -> Plan:
                # No row inserted: the check failed, or every write was stored already; the
                # full form tells which (and stores nothing twice).
                found = yield statement, args
                return found.rowcount > 0

            return single, True

        def plan() -> Plan:
            found = yield (self._lease_check if lease else self._thread_check), check
            if not found.rows:
                return False
            yield from self._insert_writes(key, kept, replaced)
            return True

        return plan, False

    def _sqlite_writes(self, lease: bool, count: int) -> ClauseElement:
        """SQLite's fast pending writes as one statement: ``count`` new writes inserted if the
        thread's row passes the fast check (its row count tells how many were)."""
        t = self._quote.format_table(self.tables.threads)
        w = self._quote.format_table(self.tables.writes)
        where = "tenant = :tenant AND thread_id = :thread_id AND updated_us >= :recent"
        if lease:
            where += " AND holder = :writer AND lease_until_us >= :fresh"
        key = ":tenant, :thread_id, :namespace, :checkpoint_id"
        rows = ", ".join(
            f"({key}, " + ", ".join(f":k_{name}_{i}" for name, _ in _WRITE_ARRAYS) + ")"
            for i in range(count)
        )
        names = ", ".join(name for name, _ in _WRITE_ARRAYS)
        return text(
            f"INSERT INTO {w} (tenant, thread_id, namespace, checkpoint_id, {names}) "
            f"SELECT * FROM (VALUES {rows}) WHERE EXISTS (SELECT 1 FROM {t} WHERE {where}) "
            "ON CONFLICT DO NOTHING"
        )

    def _postgres_writes(self, lease: bool, kept: int, replaced: int) -> ClauseElement:
        """Fast pending writes in one statement: ``kept`` writes stored only if new, and
        ``replaced`` ones replacing what is stored (counts as `_rows_source` takes them)."""
        t = self._quote.format_table(self.tables.threads)
        w = self._quote.format_table(self.tables.writes)
        where = "tenant = :tenant AND thread_id = :thread_id AND updated_us >= :recent"
        if lease:
            where += " AND holder = :writer AND lease_until_us >= CAST(:fresh AS bigint)"
        parts = [f"ok AS (SELECT 1 FROM {t} WHERE {where} FOR KEY SHARE)"]
        names = ", ".join(n for n, _ in _WRITE_ARRAYS)
        for prefix, wanted, conflict in (
            ("k_", kept, "DO NOTHING"),
            (
                "r_",
                replaced,
                "(tenant, thread_id, namespace, checkpoint_id, task_id, idx) DO UPDATE SET "
                + ", ".join(f"{n} = excluded.{n}" for n in _REPLACED),
            ),
        ):
            if not wanted:
                continue
            rows = _rows_source(prefix, _WRITE_ARRAYS, wanted)
            parts.append(
                f"{prefix}w AS (INSERT INTO {w} (tenant, thread_id, namespace, checkpoint_id, "
                f"{names}) SELECT :tenant, :thread_id, :namespace, :checkpoint_id, k.* FROM "
                f"{rows} WHERE EXISTS (SELECT 1 FROM ok) ON CONFLICT {conflict})"
            )
        return text(f"WITH {', '.join(parts)} SELECT count(*) FROM ok")

    def put_writes(self, op: ops.PutCheckpointWrites) -> Plan:
        """The full form: lock the thread's row (created if absent), check and renew the lease
        (see `memfold.checkpoint_model.Lease` for writes on a checkpoint not stored yet), then
        store the writes."""
        key = {
            "tenant": op.tenant,
            "thread_id": op.thread_id,
            "namespace": op.namespace,
            "checkpoint_id": id_bytes(op.checkpoint_id),
        }
        now = to_us(op.written_at)
        found = yield self._lock_thread, {**key, "now": now}
        holder, lease_until = found.rows[0]
        touch: tuple[ClauseElement, dict[str, Any]] = (
            self._touch,
            {**key, "now": now, "now_f": float(now), "stale": now - REFRESH_AFTER_US},
        )
        if op.lease is not None:
            info = yield self._write_info, key
            newest, stored = info.rows[0]
            if stored is not None:
                until = claim_lease(
                    op.thread_id,
                    holder,
                    None if lease_until is None else from_us(lease_until),
                    op.lease,
                    op.written_at,
                    continues_head=newest is not None and id_text(newest) == op.checkpoint_id,
                )
                touch = (
                    self._renew,
                    {**touch[1], "writer": op.lease.writer, "until": to_us(until)},
                )
        kept, replaced = _split_writes(op)
        if op.replace:
            yield self.unshare, key
        yield from self._insert_writes(key, kept, replaced)
        yield touch

    def _insert_writes(
        self, key: Mapping[str, Any], kept: list[dict[str, Any]], replaced: list[dict[str, Any]]
    ) -> Plan:
        if kept:
            yield self._insert_write, [{**key, **row} for row in kept]
        if replaced:
            yield self._replace_write, [{**key, **row} for row in replaced]


def _refused() -> Plan:
    """A plan that stores nothing and says so."""
    return False
    yield


def roots_params(tenant: str, roots: Iterable[tuple[str, str, BlobKey]]) -> dict[str, Any]:
    """The parameters of a read of value rows by key (``:tenant`` and ``:roots``, a JSON list
    of ``{t, n, c, v, o}``)."""
    keys = [{"t": t, "n": n, "c": k[0], "v": k[1], "o": k[2]} for t, n, k in dict.fromkeys(roots)]
    return {"tenant": tenant, "roots": json.dumps(keys, separators=(",", ":"))}


def _shape(count: int) -> int:
    """The row count a statement is built for: ``count`` up to `_INLINE_ROWS`, else -1 (one
    statement taking arrays, whatever their length)."""
    return count if count <= _INLINE_ROWS else -1


def _rows_source(prefix: str, columns: tuple[tuple[str, str], ...], n: int) -> str:
    """A ``FROM`` item ``k`` of ``n`` rows (`_shape`) of ``columns`` from the parameters
    `_rows_params` names: ``VALUES`` of one parameter per value, or ``unnest`` of arrays."""
    names = ", ".join(name for name, _ in columns)
    if n < 0:
        arrays = ", ".join(f"CAST(:{prefix}{name} AS {kind}[])" for name, kind in columns)
        return f"unnest({arrays}) AS k({names})"
    rows = ", ".join(
        "(" + ", ".join(f"CAST(:{prefix}{name}_{i} AS {kind})" for name, kind in columns) + ")"
        for i in range(n)
    )
    return f"(VALUES {rows}) AS k({names})"


def _rows_params(
    prefix: str, columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The parameters of `_rows_source` for ``rows`` (column values by name)."""
    if _shape(len(rows)) < 0:
        return {prefix + name: [row[name] for row in rows] for name, _ in columns}
    return {f"{prefix}{name}_{i}": row[name] for i, row in enumerate(rows) for name, _ in columns}


def _valued(
    versions: Mapping[str, Version], rows: list[StoredBlob], refs: dict[str, str]
) -> tuple[list[StoredBlob], dict[str, str]]:
    """A put's rows and refs with no row for "no value" nor for a value of empty bytes: the
    checkpoint's refs name `NO_VALUE`, or `EMPTY_VALUE` and the tag, for such a channel
    instead."""
    kept = []
    for row in rows:
        inline = row.kind == "empty" or (row.kind == "value" and not row.data)
        if not inline:
            kept.append(row)
        elif row.channel in versions and version_key(versions[row.channel]) == version_key(
            row.version
        ):
            refs[row.channel] = NO_VALUE if row.kind == "empty" else EMPTY_VALUE + row.tag
        elif row.kind == "value":
            kept.append(row)
    return kept, refs


def _keyed(rows: Iterable[StoredBlob]) -> dict[BlobKey, StoredBlob]:
    return {row.key: row for row in rows}


def _split_writes(
    op: ops.PutCheckpointWrites,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The writes kept only if new (the first of a repeated key wins) and those replacing
    what is stored (the last wins), as column values."""
    kept: dict[tuple[str, int], dict[str, Any]] = {}
    replaced: dict[tuple[str, int], dict[str, Any]] = {}
    for write in op.writes:
        data, codec = compress(write.value.data)
        row = {
            "task_id": id_bytes(write.task_id),
            "idx": write.idx,
            "channel": write.channel,
            "tag": write.value.tag,
            "data": data,
            "task_path": write.task_path,
            "codec": codec,
        }
        if write.idx < 0 or op.replace:
            replaced[write.task_id, write.idx] = row
        else:
            kept.setdefault((write.task_id, write.idx), row)
    return list(kept.values()), list(replaced.values())
