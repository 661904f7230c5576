"""Each memory operation as a plan (see `memfold.backends.sql.plans`): pure generators that
yield ``(statement, params)`` and receive `Rows`, run by the SQL runner sync or async.

Semantics are those of `memfold.backends.memory_memories`:

- A namespace prefix is a range over the ``ns`` key; expired rows are skipped by every read
  (``expires_at`` compared with the op's ``now``); filters compile with
  `memfold.recall.filters.Filter.to_sql`, so they select exactly what the Python predicate does.
- Text search finds candidates through FTS5 (SQLite) or the GIN index (PostgreSQL) and scores
  them with `memfold.recall.text.bm25` over the statistics of the rows passing the filter.
- Vector search is exact on SQLite (numpy over the stored float32 blobs). On PostgreSQL it walks
  the HNSW index with pgvector's iterative scan, and falls back to an exact scan when the
  filter leaves the index short of the candidates that exist, so ``k`` matches give ``k`` hits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    ClauseElement,
    ColumnElement,
    Float,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from memfold import memory_ops as ops
from memfold.backends.sql import words
from memfold.backends.sql.memory_schema import MemoryTables
from memfold.backends.sql.plans import Plan
from memfold.backends.sql.tombstones import TombstonePlans, scrubbed
from memfold.memories import namespace_key, namespace_page, prefix_range, rank_hits, split_key
from memfold.memory_model import MemoryHit, MemoryRecord
from memfold.ops import Op
from memfold.recall.dedupe import nearest_duplicate
from memfold.recall.filters import Filter, parse_filter
from memfold.recall.text import bm25
from memfold.recall.vectors import Matrix, from_blob, to_blob, top_k
from memfold.tombstones import EraseSubject, ErasureCounts, LiftTombstones

__all__ = ["MemoryPlans"]

_CACHED_PREFIXES = 8
"""How many namespace prefixes' vector matrices a SQLite store keeps in memory."""
_CANDIDATE_ROUND = 2_000
"""Past this many ranked candidates, the filter is checked over the whole prefix at once."""
_EF_SEARCH = 40
"""pgvector's ``hnsw.ef_search`` (its default) when the pool is smaller."""

_READS = (
    ops.GetMemories,
    ops.ListMemories,
    ops.CountMemories,
    ops.SearchMemories,
    ops.ListMemoryNamespaces,
)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class MemoryPlans:
    """Plans for the memory operations on one memory table and one SQL dialect."""

    def __init__(self, tables: MemoryTables, dialect: str) -> None:
        self.tables = tables
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        m = tables.memories
        self.m = m
        embedding: Any = (
            func.cast(m.c.embedding, Text) if self.pg else m.c.embedding  # vector as '[..]' text
        )
        self._columns = [
            m.c.seq, m.c.ns, m.c.id, m.c.text, m.c.value, m.c.embedding_model, m.c.importance,
            m.c.ttl, m.c.created_at, m.c.updated_at, m.c.last_used_at, m.c.expires_at,
        ]  # fmt: skip
        self._embedding = embedding
        self._matrices: dict[str, _Matrix] = {}
        self._tombstones = TombstonePlans(tables.base.tombstones, dialect)
        # PostgreSQL's per-namespace lock around a put that de-duplicates or evicts.
        self._lock = (
            select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("lock"), 0)))
            if self.pg
            else None
        )
        self._lock_name = f"memfold memories {m.schema or ''}.{m.name} "
        # The hot statements, built once with named parameters so the runner compiles them
        # once (see `prepared`); the rest are built per call around their filter.
        live = or_(m.c.expires_at.is_(None), m.c.expires_at > bindparam("now"))
        under = and_(m.c.ns >= bindparam("low"), m.c.ns < bindparam("high"))
        has_vector = m.c.embedding.is_not(None)
        self._upsert = self._upsert_statement()
        self._existing = select(m.c.id, m.c.created_at).where(
            m.c.ns == bindparam("ns"), self._listed(m.c.id, "ids"), live
        )
        self._rows_of = select(*self._columns, self._embedding).where(self._listed(m.c.seq, "seqs"))
        self._alive = select(m.c.seq).where(under, live, has_vector, self._listed(m.c.seq, "seqs"))
        self._version = text(f"SELECT n FROM {tables.version} WHERE id = 1")
        self._index_settings = text(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.ef_search', :ef, true)"
        )
        distance = self._distance(bindparam("vector", type_=Text))
        self._nearest_all = (
            select(m.c.seq, 1 - distance)
            .where(under, live, has_vector)
            .order_by(distance)
            .limit(bindparam("pool", type_=Integer))
        )

    def prepared(self) -> list[ClauseElement]:
        """The statements every plan may reuse, for the runner to compile once."""
        return [
            self._upsert, self._existing, self._rows_of, self._alive, self._version,
            self._index_settings, self._nearest_all, *([] if self._lock is None else [self._lock]),
        ]  # fmt: skip

    def _listed(self, column: Any, name: str) -> ColumnElement[bool]:
        """``column`` is one of the values of list parameter ``name`` (see `_list_param`): one
        statement for any number of values."""
        if self.pg:
            kind = BigInteger if column.name == "seq" else String
            listed: ColumnElement[bool] = column == any_(
                bindparam(name, type_=postgresql.ARRAY(kind))
            )
        else:
            values = text(f"SELECT value FROM json_each(:{name})").columns(value=column.type)
            listed = column.in_(values)
        return listed

    def _list_param(self, values: Sequence[Any]) -> Any:
        """The value of a `_listed` parameter."""
        return list(values) if self.pg else json.dumps(list(values))

    def _distance(self, vector: Any) -> ColumnElement[float]:
        m = self.m
        return m.c.embedding.op("<=>", return_type=Float())(cast(vector, m.c.embedding.type))

    def writes(self, op: Op[Any]) -> bool:
        """Whether ``op`` changes data (touching reads do)."""
        if isinstance(op, ops.SearchMemories):
            # PostgreSQL's index settings are SET LOCAL, which needs a transaction.
            return op.touch or (self.pg and op.vector is not None)
        if isinstance(op, ops.GetMemories):
            return op.touch
        return not isinstance(op, _READS)

    # Shared pieces.

    def _vector_param(self, vector: Matrix | None) -> Any:
        if vector is None:
            return None
        if self.pg:
            return "[" + ",".join(map(repr, vector.tolist())) + "]"
        return to_blob(vector)

    def _vector_value(self, name: str | None = None) -> ColumnElement[Any]:
        from pgvector.sqlalchemy import Vector  # type: ignore[import-untyped]

        param = bindparam(name, type_=Text) if name else None
        if self.pg:
            return cast(param, Vector(self.tables.dimensions))
        return bindparam(name)

    def _live(self, now: datetime) -> ColumnElement[bool]:
        m = self.m
        return or_(m.c.expires_at.is_(None), m.c.expires_at > bindparam(None, now.timestamp()))

    def _under(self, prefix: str) -> ColumnElement[bool]:
        low, high = prefix_range(prefix)
        return and_(self.m.c.ns >= bindparam(None, low), self.m.c.ns < bindparam(None, high))

    def _where(self, prefix: str, now: datetime | None, where: Filter) -> list[Any]:
        clauses: list[Any] = [self._under(prefix)]
        if now is not None:
            clauses.append(self._live(now))
        if not where.always:
            clauses.append(where.to_sql(self.m.c.value, self.dialect))
        return clauses

    def _stale(self, model: str | None) -> list[Any]:
        if model is None:
            return []
        m = self.m
        return [
            m.c.text != "",
            or_(
                m.c.embedding.is_(None),
                m.c.embedding_model.is_(None),
                m.c.embedding_model != bindparam(None, model),
            ),
        ]

    def _select(self, include_embedding: bool) -> Any:
        columns = list(self._columns)
        if include_embedding:
            columns.append(self._embedding)
        return select(*columns)

    def _record(self, row: Sequence[Any], include_embedding: bool) -> MemoryRecord:
        (_, ns, id_, text_, value, model, importance, ttl, created, updated, used, expires) = row[
            :12
        ]
        embedding = None
        if include_embedding and row[12] is not None:
            embedding = tuple(float(x) for x in self._parse_vector(row[12]))
        return MemoryRecord(
            split_key(ns), id_, text_, value if isinstance(value, dict) else json.loads(value),
            embedding, model, importance, ttl, _time(created), _time(updated), _time(used),
            _time(expires),
        )  # fmt: skip

    def _parse_vector(self, raw: Any) -> Matrix:
        if self.pg:
            return np.asarray(json.loads(raw), dtype=np.float32)
        return from_blob(raw)

    def _touch(self, seqs: list[int], now: datetime) -> ClauseElement:
        m = self.m
        stamp = now.timestamp()
        return (
            update(m)
            .where(m.c.seq.in_([bindparam(None, s) for s in seqs]))
            .values(
                last_used_at=bindparam(None, stamp),
                expires_at=case((m.c.ttl.is_(None), None), else_=bindparam(None, stamp) + m.c.ttl),
            )
        )

    @staticmethod
    def _touched(record: MemoryRecord, now: datetime) -> MemoryRecord:
        from memfold.memories import expiry

        return replace(record, last_used_at=now, expires_at=expiry(now, record.ttl_seconds))

    # Plans.

    def plan(self, op: Op[Any]) -> Plan:
        """The plan that runs ``op``."""
        match op:
            case ops.PutMemories():
                if op.keep_times and not self.pg:  # a rotation: the old text's bytes go
                    return scrubbed(self._put(op), None)
                return self._put(op)
            case ops.GetMemories():
                return self._get(op)
            case ops.DeleteMemories():
                return self._delete(op)
            case ops.DeleteMemoriesWhere():
                return self._delete_where(op)
            case ops.ListMemories():
                return self._list(op)
            case ops.CountMemories():
                return self._count(op)
            case ops.SearchMemories():
                return self._search(op)
            case ops.ListMemoryNamespaces():
                return self._namespaces(op)
            case ops.SetEmbeddings():
                return self._set_embeddings(op)
            case ops.SweepMemories():
                if op.scrub and not op.dry_run and not self.pg:
                    return scrubbed(self._sweep(op), self.tables.fts)
                return self._sweep(op)
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._tombstones.lift(op)
        raise TypeError(f"the SQL memory store cannot run {type(op).__name__}")

    def _erase(self, op: EraseSubject) -> Plan:
        if not op.dry_run:
            yield from self._tombstones.place(op.tenant, op.tombstones)
        prefix = op.memory_prefix
        if prefix is None:
            return ErasureCounts()
        under = self._under(namespace_key(prefix))
        found = int((yield select(func.count()).select_from(self.m).where(under), None).scalar())
        if found and not op.dry_run:
            deletes = self._delete_under(under)
            yield from scrubbed(deletes, self.tables.fts) if not self.pg else deletes
            self._matrices.clear()  # cached vectors, the erased ones among them
        return ErasureCounts(memories=found)

    def _delete_under(self, under: ColumnElement[bool]) -> Plan:
        yield delete(self.m).where(under), None

    _PUT_COLUMNS = (
        "ns", "tenant", "id", "text", "terms", "n_terms", "embedding_model", "importance",
        "ttl", "created_at", "updated_at", "last_used_at", "expires_at",
    )  # fmt: skip

    def _upsert_statement(self) -> Any:
        m = self.m
        upsert = (postgresql if self.pg else sqlite).insert(m)
        value: Any = cast(bindparam("value", type_=Text), JSONB) if self.pg else bindparam("value")
        names = self._PUT_COLUMNS
        statement = upsert.values(
            **{name: bindparam(name) for name in names},
            value=value,
            embedding=self._vector_value("embedding"),
        )
        return statement.on_conflict_do_update(
            index_elements=[m.c.ns, m.c.id],
            set_={
                c: statement.excluded[c]
                for c in (*names, "value", "embedding")
                if c not in ("ns", "tenant")
            },
        )

    def _put(self, op: ops.PutMemories) -> Plan:
        """Without de-duplication: one read of the batch's existing records per namespace
        (they keep their creation time) and one batched upsert; with it, record by record,
        as each may merge into one written before it.

        A put that de-duplicates or evicts first locks its namespaces (in order, so two puts
        cannot deadlock) on PostgreSQL, so concurrent puts neither miss each other's duplicates
        nor evict past the capacity; SQLite's ``BEGIN IMMEDIATE`` serialises writes already."""
        stored: list[MemoryRecord] = []
        params: list[dict[str, Any]] = []
        namespaces = ["".join(label + "\x1f" for label in r.namespace) for r in op.records]
        if self._lock is not None and (op.capacity is not None or op.dedupe_threshold is not None):
            for ns in sorted(set(namespaces)):
                yield self._lock, {"lock": self._lock_name + ns}
        created_at: dict[tuple[str, str], float] = {}
        if op.dedupe_threshold is None and not op.keep_times:
            by_ns: dict[str, list[str]] = {}
            for ns, record in zip(namespaces, op.records, strict=True):
                by_ns.setdefault(ns, []).append(str(record.id))
            for ns, ids in by_ns.items():
                result = yield (
                    self._existing,
                    {"ns": ns, "ids": self._list_param(ids), "now": op.now.timestamp()},
                )
                created_at.update({(ns, str(row[0])): float(row[1]) for row in result.rows})
        for ns, record, value_json, terms, vector in zip(
            namespaces, op.records, op.values, op.terms, op.vectors, strict=True
        ):
            if op.keep_times:
                created = _ts(record.created_at)
            elif op.dedupe_threshold is None:
                created = created_at.get((ns, str(record.id)))
            else:
                result = yield (
                    self._existing,
                    {"ns": ns, "ids": self._list_param([record.id]), "now": op.now.timestamp()},
                )
                created = result.rows[0][1] if result.rows else None
                if created is None and vector is not None:
                    found = yield from self._duplicate(ns, vector, op)
                    if found is not None:
                        record_id, created, importance = found
                        record = replace(
                            record, id=record_id, importance=max(record.importance, importance)
                        )
            record = replace(
                record, embedding=None, created_at=op.now if created is None else _time(created)
            )
            params.append(self._put_params(ns, record, value_json, terms, vector))
            if op.dedupe_threshold is not None:
                yield self._upsert, params.pop()
            stored.append(record)
        if params:
            yield self._upsert, params
        if op.capacity is not None:
            for ns in sorted(set(namespaces)):
                yield from self._evict(ns, op.capacity, op.now)
        return stored

    def _put_params(
        self,
        ns: str,
        record: MemoryRecord,
        value_json: str,
        terms: Sequence[str],
        vector: Matrix | None,
    ) -> dict[str, Any]:
        return {
            "ns": ns, "tenant": record.namespace[0], "id": record.id, "text": record.text,
            "value": value_json,
            "terms": " ".join(terms), "n_terms": len(terms),
            "embedding": self._vector_param(vector), "embedding_model": record.embedding_model,
            "importance": record.importance, "ttl": record.ttl_seconds,
            "created_at": _ts(record.created_at), "updated_at": _ts(record.updated_at),
            "last_used_at": _ts(record.last_used_at), "expires_at": _ts(record.expires_at),
        }  # fmt: skip

    def _duplicate(self, ns: str, vector: Matrix, op: ops.PutMemories) -> Plan:
        m = self.m
        assert op.dedupe_threshold is not None
        live = [m.c.ns == bindparam(None, ns), self._live(op.now), m.c.embedding.is_not(None)]
        if self.pg:
            distance = m.c.embedding.op("<=>", return_type=Float())(
                cast(bindparam(None, self._vector_param(vector), Text), m.c.embedding.type)
            )
            result = yield (
                select(m.c.id, m.c.created_at, m.c.importance, 1 - distance)
                .where(*live)
                .order_by(distance)
                .limit(1),
                None,
            )
            if result.rows and result.rows[0][3] >= op.dedupe_threshold:
                row = result.rows[0]
                return str(row[0]), float(row[1]), float(row[2])
            return None
        result = yield (
            select(m.c.id, m.c.created_at, m.c.importance, m.c.embedding).where(*live),
            None,
        )
        if not result.rows:
            return None
        matrix = np.stack([from_blob(row[3]) for row in result.rows])
        best = nearest_duplicate(vector, matrix, op.dedupe_threshold)
        if best is None:
            return None
        row = result.rows[best]
        return str(row[0]), float(row[1]), float(row[2])

    def _evict(self, ns: str, capacity: int, now: datetime) -> Plan:
        m = self.m
        result = yield select(func.count()).where(m.c.ns == bindparam(None, ns)), None
        excess = int(result.scalar() or 0) - capacity
        if excess <= 0:
            return None
        alive = case((self._live(now), 1), else_=0)
        doomed = (
            select(m.c.seq)
            .where(m.c.ns == bindparam(None, ns))
            .order_by(alive, m.c.importance, m.c.last_used_at, m.c.id)
            .limit(bindparam(None, excess, Integer))
        )
        result = yield select(doomed.subquery().c.seq), None
        seqs = [row[0] for row in result.rows]
        yield delete(m).where(m.c.seq.in_([bindparam(None, s) for s in seqs])), None
        return None

    def _get(self, op: ops.GetMemories) -> Plan:
        if not op.ids:  # an empty IN () is no SQL at all
            return []
        m = self.m
        result = yield (
            self._select(op.include_embedding).where(
                m.c.ns == bindparam(None, op.namespace),
                m.c.id.in_([bindparam(None, i) for i in op.ids]),
                self._live(op.now),
            ),
            None,
        )
        by_id = {row[2]: row for row in result.rows}
        rows = [by_id[i] for i in op.ids if i in by_id]
        records = [self._record(row, op.include_embedding) for row in rows]
        if op.touch and rows:
            yield self._touch([row[0] for row in rows], op.now), None
            records = [self._touched(r, op.now) for r in records]
        return records

    def _delete(self, op: ops.DeleteMemories) -> Plan:
        if not op.ids:
            return 0
        m = self.m
        result = yield (
            delete(m).where(
                m.c.ns == bindparam(None, op.namespace),
                m.c.id.in_([bindparam(None, i) for i in op.ids]),
            ),
            None,
        )
        return result.rowcount

    def _delete_where(self, op: ops.DeleteMemoriesWhere) -> Plan:
        result = yield delete(self.m).where(*self._where(op.prefix, None, op.filter)), None
        return result.rowcount

    def _list(self, op: ops.ListMemories) -> Plan:
        m = self.m
        result = yield (
            self._select(op.include_embedding)
            .where(*self._where(op.prefix, op.now, op.filter), *self._stale(op.stale_model))
            .order_by(m.c.created_at, m.c.id, m.c.ns)
            .limit(bindparam(None, op.limit, Integer))
            .offset(bindparam(None, op.offset, Integer)),
            None,
        )
        return [self._record(row, op.include_embedding) for row in result.rows]

    def _count(self, op: ops.CountMemories) -> Plan:
        result = yield (
            select(func.count()).where(
                *self._where(op.prefix, op.now, op.filter), *self._stale(op.stale_model)
            ),
            None,
        )
        return int(result.scalar() or 0)

    def _namespaces(self, op: ops.ListMemoryNamespaces) -> Plan:
        m = self.m
        result = yield (
            select(m.c.ns).where(*self._where(op.prefix, op.now, parse_filter(None))).distinct(),
            None,
        )
        return namespace_page((key for (key,) in result.rows), op)

    def _set_embeddings(self, op: ops.SetEmbeddings) -> Plan:
        m = self.m
        statement = (
            update(m)
            .where(m.c.ns == bindparam("ns"), m.c.id == bindparam("rid"))
            .values(embedding=self._vector_value("vec"), embedding_model=bindparam("model"))
        )
        updated = 0
        for record_id, vector in zip(op.ids, op.vectors, strict=True):
            result = yield (
                statement,
                {
                    "ns": op.namespace,
                    "rid": record_id,
                    "vec": self._vector_param(vector),
                    "model": op.model,
                },
            )
            updated += result.rowcount
        return updated

    def _sweep(self, op: ops.SweepMemories) -> Plan:
        """Expired records (``memories_expiry``), records older than the policy's max age
        (``memories_age``), then each namespace's records past ``keep_last``: namespaces one
        by one (the next key after the last, on ``memories_key``), each cut at its
        ``keep_last``-th newest record (``memories_order`` read backwards). Index searches
        only; a namespace under the limit costs two of them."""
        m, policy = self.m, op.policy
        in_prefix: list[ColumnElement[bool]] = []
        high = None
        if op.prefix:
            low, high = prefix_range(op.prefix)
            in_prefix = [m.c.ns >= bindparam(None, low), m.c.ns < bindparam(None, high)]
        result = yield (
            delete(m).where(m.c.expires_at <= bindparam(None, op.now.timestamp()), *in_prefix),
            None,
        )
        removed = result.rowcount
        if policy.max_age_seconds is not None:
            cutoff = op.now.timestamp() - policy.max_age_seconds
            result = yield (
                delete(m).where(m.c.created_at < bindparam(None, cutoff), *in_prefix),
                None,
            )
            removed += result.rowcount
        if policy.keep_last is None:
            return removed
        upper = [] if high is None else [m.c.ns < bindparam(None, high)]
        ns = op.prefix
        first = True
        while True:
            after = m.c.ns >= bindparam(None, ns) if first else m.c.ns > bindparam(None, ns)
            result = yield select(m.c.ns).where(after, *upper).order_by(m.c.ns).limit(1), None
            if not result.rows:
                return removed
            ns, first = result.scalar(), False
            edge = (
                select(m.c.created_at, m.c.id)
                .where(m.c.ns == bindparam(None, ns))
                .order_by(m.c.created_at.desc(), m.c.id.desc())
                .limit(1)
                .offset(bindparam(None, policy.keep_last, Integer))
            )
            found = (yield edge, None).rows
            if found:
                created, record_id = found[0]
                older = or_(
                    m.c.created_at < bindparam(None, created),
                    and_(
                        m.c.created_at == bindparam(None, created),
                        m.c.id <= bindparam(None, record_id),
                    ),
                )
                result = yield delete(m).where(m.c.ns == bindparam(None, ns), older), None
                removed += result.rowcount

    # Search.

    def _search(self, op: ops.SearchMemories) -> Plan:
        m = self.m
        # Built only when needed: the unfiltered vector path runs prepared statements.
        where = (
            self._where(op.prefix, op.now, op.filter)
            if op.terms or not op.filter.always or self.pg
            else []
        )
        rows: dict[int, Sequence[Any]] = {}
        text_scores: dict[str, float] | None = None
        cosines: dict[str, float] | None = None
        if op.terms:
            result = yield (
                select(func.count(), func.coalesce(func.sum(m.c.n_terms), 0)).where(*where),
                None,
            )
            n_docs, total = result.rows[0]
            if self.pg:
                query = " | ".join(f"'{t}'" for t in op.terms)
                match: Any = words.tsvector(m.c.terms).op("@@")(
                    func.cast(bindparam(None, query, Text), postgresql.TSQUERY)
                )
            else:
                fts = self.tables.fts
                query = " OR ".join(f'"{t}"' for t in op.terms)
                match = m.c.seq.in_(
                    text(f"SELECT rowid FROM {fts} WHERE {fts} MATCH :q")
                    .bindparams(q=query)
                    .columns(rowid=Integer)
                )
            result = yield select(*self._columns, m.c.terms).where(*where, match), None
            # SQLite's tokenizer folds accents: keep the rows that hold a query term as is.
            wanted = set(op.terms)
            found = [row for row in result.rows if wanted.intersection(row[12].split())]
            doc_terms = [row[12].split() for row in found]
            df = {t: sum(1 for d in doc_terms if t in d) for t in op.terms}
            scores = bm25(
                op.terms, doc_terms, n_docs=int(n_docs),
                avg_len=float(total) / n_docs if n_docs else 0.0, df=df,
                weights=op.term_weights,
            )  # fmt: skip
            best = sorted(zip(scores, found, strict=True), key=lambda s: -s[0])[: op.pool]
            text_scores = {}
            for score, row in best:
                text_scores[str(row[0])] = score
                rows[row[0]] = row
        if op.vector is not None:
            cosines = yield from self._nearest(op, where)
            missing = [int(s) for s in cosines if int(s) not in rows]
            missing += [s for s in rows if str(s) not in cosines]
            if missing:
                extra = yield self._rows_of, {"seqs": self._list_param(missing)}
                for row in extra.rows:
                    rows.setdefault(row[0], row)
                    if str(row[0]) not in cosines and row[12] is not None:
                        cosines[str(row[0])] = float(self._parse_vector(row[12]) @ op.vector)
        records = {str(seq): self._record(row, False) for seq, row in rows.items()}
        hits = rank_hits(op, text_scores, cosines, records)
        seq_of = {id(r): int(k) for k, r in records.items()}
        if op.include_embedding and hits:
            result = yield (
                select(m.c.seq, self._embedding).where(
                    m.c.seq.in_([bindparam(None, seq_of[id(h.record)]) for h in hits])
                ),
                None,
            )
            raw = {row[0]: row[1] for row in result.rows}
            hits = [
                _with_record(h, _embedded(h.record, self._parse_vector, raw[seq_of[id(h.record)]]))
                for h in hits
            ]
        if op.touch and hits:
            touched = [int(k) for k, r in records.items() if any(h.record.id == r.id and
                       h.record.namespace == r.namespace for h in hits)]  # fmt: skip
            yield self._touch(touched, op.now), None
            hits = [_with_record(h, self._touched(h.record, op.now)) for h in hits]
        return hits

    def _exact(self, op: ops.SearchMemories, where: list[Any]) -> Plan:
        """SQLite: exact cosine over the prefix's vectors, kept in process memory while the
        write counter (bumped by triggers, from any process) stays the same."""
        m = self.m
        assert op.vector is not None
        counter = yield self._version, None
        version = int(counter.scalar() or 0)
        cached = self._matrices.get(op.prefix)
        if cached is None or cached.version != version:
            result = yield (
                select(m.c.seq, m.c.embedding).where(
                    self._under(op.prefix), m.c.embedding.is_not(None)
                ),
                None,
            )
            seqs = np.fromiter((row[0] for row in result.rows), dtype=np.int64)
            blob = b"".join(row[1] for row in result.rows)
            matrix = np.frombuffer(blob, dtype="<f4").reshape(len(seqs), -1) if blob else None
            cached = _Matrix(
                version, seqs, np.zeros((0, 1), np.float32) if matrix is None else matrix
            )
            while len(self._matrices) >= _CACHED_PREFIXES:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[op.prefix] = cached
        if not cached.seqs.size:
            return {}
        sims = cached.matrix @ op.vector
        k = min(sims.size, max(op.pool, 16))
        low, high = prefix_range(op.prefix)
        while True:
            if k >= sims.size or k > _CANDIDATE_ROUND:
                # Many candidates: check the filter over the whole prefix at once, and rank
                # exactly the rows that pass it.
                where = where or self._where(op.prefix, op.now, op.filter)
                allowed = yield select(m.c.seq).where(*where, m.c.embedding.is_not(None)), None
                passing = np.flatnonzero(np.isin(cached.seqs, [row[0] for row in allowed.rows]))
                best = passing[top_k(sims[passing], op.pool)]
                return {str(int(cached.seqs[i])): float(sims[i]) for i in best}
            # Rank a few more each round; the database says which candidates are live and
            # pass the filter, so a selective filter still fills the pool.
            order = top_k(sims, k)
            wanted = self._list_param([int(s) for s in cached.seqs[order]])
            if op.filter.always:
                params = {"low": low, "high": high, "now": op.now.timestamp(), "seqs": wanted}
                allowed = yield self._alive, params
            else:
                allowed = yield (
                    select(m.c.seq).where(*where, self._listed(m.c.seq, "seqs")),
                    {"seqs": wanted},
                )
            ok = np.isin(cached.seqs[order], [row[0] for row in allowed.rows])
            picked = order[ok][: op.pool]
            if len(picked) >= op.pool:
                return {str(int(cached.seqs[i])): float(sims[i]) for i in picked}
            k = min(sims.size, k * 4)

    def _nearest(self, op: ops.SearchMemories, where: list[Any]) -> Plan:
        """Cosine similarity of the ``op.pool`` nearest rows passing ``where``, by seq."""
        m = self.m
        assert op.vector is not None
        has_vector = m.c.embedding.is_not(None)
        if not self.pg:
            return (yield from self._exact(op, where))
        vector = self._vector_param(op.vector)
        # One round trip sets the index's options for this transaction: pgvector's iterative
        # scan keeps walking the graph until the filter lets ``pool`` rows through.
        yield self._index_settings, {"ef": str(max(_EF_SEARCH, min(op.pool, 1000)))}
        if op.filter.always:
            low, high = prefix_range(op.prefix)
            nearest: Any = self._nearest_all
            params = {
                "low": low, "high": high, "now": op.now.timestamp(), "vector": vector,
                "pool": op.pool,
            }  # fmt: skip
        else:
            distance = self._distance(bindparam("vector", type_=Text))
            nearest = (
                select(m.c.seq, 1 - distance)
                .where(*where, has_vector)
                .order_by(distance)
                .limit(bindparam("pool", type_=Integer))
            )
            params = {"vector": vector, "pool": op.pool}
        result = yield nearest, params
        if len(result.rows) < op.pool:
            # The index may stop short under a selective filter: check, then scan exactly.
            counted = yield select(func.count()).where(*where, has_vector), None
            if int(counted.scalar() or 0) > len(result.rows):
                yield text("SET LOCAL enable_indexscan = off"), None
                result = yield nearest, params
                yield text("SET LOCAL enable_indexscan = on"), None
        return {str(row[0]): float(row[1]) for row in result.rows}


class _Matrix:
    """The vectors under one namespace prefix, as of one value of the write counter."""

    __slots__ = ("matrix", "seqs", "version")

    def __init__(self, version: int, seqs: npt.NDArray[np.int64], matrix: Matrix) -> None:
        self.version, self.seqs, self.matrix = version, seqs, matrix


def _with_record(hit: MemoryHit, record: MemoryRecord) -> MemoryHit:
    return MemoryHit(record, hit.score, hit.text_score, hit.vector_score)


def _embedded(record: MemoryRecord, parse: Any, raw: Any) -> MemoryRecord:
    if raw is None:
        return record
    return replace(record, embedding=tuple(float(x) for x in parse(raw)))
