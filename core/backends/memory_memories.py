"""The in-process memory store (``memory://``): dicts and numpy arrays behind one lock.

Each namespace keeps its records, an inverted index of their terms, and its vectors as rows of
one float32 matrix (grown by doubling, a deleted row filled by the last), so a vector search is
one matrix-vector product per namespace under the prefix: exact, and as fast as numpy.

Examples:
    >>> store = MemoryMemoryStore(dimensions=2)
    >>> _ = store.put(("t", "u"), "north", embedding=[0.0, 1.0])
    >>> _ = store.put(("t", "u"), "east", embedding=[1.0, 0.0])
    >>> [h.record.text for h in store.search(("t",), vector=[0.1, 0.9], k=1)]
    ['north']
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from memfold import memory_ops as ops
from memfold.memories import BaseMemoryStore, expiry, namespace_key, namespace_page, rank_hits
from memfold.memory_model import MemoryHit, MemoryRecord, Namespace
from memfold.ops import Op
from memfold.recall.dedupe import nearest_duplicate
from memfold.recall.embedders import Embedder
from memfold.recall.filters import Filter, parse_filter
from memfold.recall.text import bm25
from memfold.recall.vectors import Matrix, top_k
from memfold.retention import RetentionPolicy
from memfold.stores import Capabilities
from memfold.tombstones import EraseSubject, ErasureCounts, LiftTombstones, TombstoneSet

__all__ = ["MemoryMemoryStore"]

T = TypeVar("T")


@dataclass(slots=True)
class _Entry:
    record: MemoryRecord  # without embedding
    terms: list[str]
    row: int | None = None  # in the namespace's matrix


@dataclass(slots=True)
class _Namespace:
    entries: dict[str, _Entry] = field(default_factory=dict)
    postings: dict[str, set[str]] = field(default_factory=dict)
    matrix: Matrix = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    row_ids: list[str] = field(default_factory=list)
    total_terms: int = 0

    def vectors(self) -> Matrix:
        return self.matrix[: len(self.row_ids)]

    def add_vector(self, record_id: str, vector: Matrix) -> int:
        n = len(self.row_ids)
        if self.matrix.shape[0] == n or self.matrix.shape[1] != vector.size:
            grown = np.zeros((max(8, 2 * n), vector.size), dtype=np.float32)
            if self.matrix.shape[1] == vector.size:
                grown[:n] = self.matrix[:n]
            self.matrix = grown
        self.matrix[n] = vector
        self.row_ids.append(record_id)
        return n

    def drop_vector(self, row: int) -> None:
        last = len(self.row_ids) - 1
        if row != last:
            moved = self.row_ids[last]
            self.matrix[row] = self.matrix[last]
            self.row_ids[row] = moved
            self.entries[moved].row = row
        self.row_ids.pop()

    def index(self, record_id: str, terms: list[str]) -> None:
        self.total_terms += len(terms)
        for term in set(terms):
            self.postings.setdefault(term, set()).add(record_id)

    def unindex(self, record_id: str, terms: list[str]) -> None:
        self.total_terms -= len(terms)
        for term in set(terms):
            ids = self.postings.get(term)
            if ids is not None:
                ids.discard(record_id)
                if not ids:
                    del self.postings[term]


def _copy(value: Any) -> Any:
    """A copy of a JSON value sharing no dict or list with it (tuples become lists, as a
    round trip through the other backends makes them)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _live(record: MemoryRecord, now: datetime) -> bool:
    return record.expires_at is None or record.expires_at > now


class MemoryMemoryStore(BaseMemoryStore):
    """Long-term memories in process memory (see `BaseMemoryStore` for the arguments)."""

    name = "memory"

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        dimensions: int | None = None,
        dedupe_threshold: float | None = None,
        capacity: int | None = None,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        super().__init__(
            Capabilities(transactions=True, full_text_search=True, ttl=True, vector_search=True),
            embedder=embedder,
            dimensions=dimensions,
            dedupe_threshold=dedupe_threshold,
            capacity=capacity,
            text_weight=text_weight,
            vector_weight=vector_weight,
            retention=retention,
        )
        self._spaces: dict[str, _Namespace] = {}
        self._expiring: dict[tuple[str, str], datetime] = {}
        self._tombstones = TombstoneSet()
        self._lock = threading.Lock()

    def execute(self, op: Op[T]) -> T:
        """Run one operation under the store's lock."""
        with self._lock:
            result: Any = self._run(op)
        return result  # type: ignore[no-any-return]

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation; nothing here waits on I/O."""
        return self.execute(op)

    def _run(self, op: Op[Any]) -> Any:
        match op:
            case ops.PutMemories():
                for record in op.records:
                    self._tombstones.refuse_namespace(record.namespace)
                return self._put(op)
            case ops.GetMemories():
                return self._get(op)
            case ops.DeleteMemories():
                space = self._spaces.get(op.namespace)
                if space is None:
                    return 0
                return sum(self._remove(op.namespace, space, i) for i in op.ids)
            case ops.DeleteMemoriesWhere():
                doomed = [
                    (key, space, e.record.id)
                    for key, space, e in self._scan(op.prefix, None, op.filter)
                ]
                return sum(self._remove(key, space, str(i)) for key, space, i in doomed)
            case ops.ListMemories():
                found = [
                    (key, e)
                    for key, _, e in self._scan(op.prefix, op.now, op.filter)
                    if _stale(e, op.stale_model)
                ]
                found.sort(key=lambda pair: (pair[1].record.created_at, pair[1].record.id, pair[0]))
                page = found[op.offset : op.offset + op.limit]
                return [self._out(key, e, op.include_embedding) for key, e in page]
            case ops.CountMemories():
                return sum(
                    1
                    for _, _, e in self._scan(op.prefix, op.now, op.filter)
                    if _stale(e, op.stale_model)
                )
            case ops.SearchMemories():
                return self._search(op)
            case ops.ListMemoryNamespaces():
                return self._namespaces(op)
            case ops.SetEmbeddings():
                space = self._spaces.get(op.namespace)
                updated = 0
                for record_id, vector in zip(op.ids, op.vectors, strict=True):
                    entry = space.entries.get(record_id) if space else None
                    if space is None or entry is None:
                        continue
                    if entry.row is not None:
                        space.drop_vector(entry.row)
                    entry.row = space.add_vector(record_id, vector)
                    entry.record = replace(entry.record, embedding_model=op.model)
                    updated += 1
                return updated
            case ops.SweepMemories():
                return self._sweep(op)
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._tombstones.lift(op)
        raise TypeError(f"the memory store cannot run {type(op).__name__}")

    # Helpers.

    def _scan(
        self, prefix: str, now: datetime | None, where: Filter
    ) -> Iterator[tuple[str, _Namespace, _Entry]]:
        """Records under ``prefix`` passing ``where`` (live at ``now`` unless None)."""
        for key, space in list(self._spaces.items()):
            if not key.startswith(prefix):
                continue
            for entry in list(space.entries.values()):
                if now is not None and not _live(entry.record, now):
                    continue
                if where.matches(entry.record.value):
                    yield key, space, entry

    def _sweep(self, op: ops.SweepMemories) -> int:
        """Remove (or, in a dry run, count) the records ``op`` sweeps."""
        doomed = {
            (key, record_id)
            for (key, record_id), when in self._expiring.items()
            if when <= op.now and key.startswith(op.prefix)
        }
        keep, max_age = op.policy.keep_last, op.policy.max_age_seconds
        if keep is not None or max_age is not None:
            cutoff = None if max_age is None else op.now - timedelta(seconds=max_age)
            for key, space in self._spaces.items():
                if not key.startswith(op.prefix):
                    continue
                live = sorted(
                    (e.record for e in space.entries.values() if (key, e.record.id) not in doomed),
                    key=lambda r: (r.created_at, r.id),
                )
                old = [] if keep is None else live[:-keep]
                if cutoff is not None:
                    old += [r for r in live if r.created_at is not None and r.created_at < cutoff]
                doomed.update((key, str(r.id)) for r in old)
        if op.dry_run:
            return len(doomed)
        removed = 0
        for key, record_id in sorted(doomed):
            found = self._spaces.get(key)
            removed += 0 if found is None else self._remove(key, found, record_id)
        return removed

    def _remove(self, key: str, space: _Namespace, record_id: str) -> int:
        entry = space.entries.pop(record_id, None)
        if entry is None:
            return 0
        space.unindex(record_id, entry.terms)
        if entry.row is not None:
            space.drop_vector(entry.row)
        self._expiring.pop((key, record_id), None)
        if not space.entries:
            del self._spaces[key]
        return 1

    def _store(
        self, key: str, record: MemoryRecord, terms: list[str], vector: Matrix | None
    ) -> None:
        space = self._spaces.setdefault(key, _Namespace())
        record_id = str(record.id)
        old = space.entries.get(record_id)
        if old is not None:
            space.unindex(record_id, old.terms)
            if old.row is not None:
                space.drop_vector(old.row)
        entry = _Entry(record, terms)
        space.entries[record_id] = entry
        space.index(record_id, terms)
        if vector is not None:
            entry.row = space.add_vector(record_id, vector)
        if record.expires_at is not None:
            self._expiring[(key, record_id)] = record.expires_at
        else:
            self._expiring.pop((key, record_id), None)

    def _expired(self, prefix: str, now: datetime) -> dict[str, list[_Entry]]:
        """The entries under ``prefix`` past their TTL (not swept yet), by namespace key."""
        found: dict[str, list[_Entry]] = {}
        for (key, record_id), expires_at in self._expiring.items():
            if expires_at <= now and key.startswith(prefix):
                found.setdefault(key, []).append(self._spaces[key].entries[record_id])
        return found

    def _out(self, key: str, entry: _Entry, include_embedding: bool) -> MemoryRecord:
        """The record as a read returns it: its value a copy, as other backends' are."""
        record = replace(entry.record, value=_copy(entry.record.value))
        if not include_embedding or entry.row is None:
            return record
        vector = self._spaces[key].matrix[entry.row]
        return replace(record, embedding=tuple(float(x) for x in vector))

    # Operations.

    def _erase(self, op: EraseSubject) -> ErasureCounts:
        prefix = op.memory_prefix
        everything = parse_filter(None)
        found = [] if prefix is None else self._scan(namespace_key(prefix), None, everything)
        doomed = [(key, space, str(entry.record.id)) for key, space, entry in found]
        if not op.dry_run:
            self._tombstones.place(op.tombstones)
            for key, space, record_id in doomed:
                self._remove(key, space, record_id)
        return ErasureCounts(memories=len(doomed))

    def _put(self, op: ops.PutMemories) -> list[MemoryRecord]:
        stored = []
        written: set[str] = set()
        for record, terms, vector in zip(op.records, op.terms, op.vectors, strict=True):
            key = "".join(label + "\x1f" for label in record.namespace)
            space = self._spaces.get(key)
            old = space.entries.get(str(record.id)) if space else None
            if old is not None and not _live(old.record, op.now):
                old = None
            if old is None and space and vector is not None and op.dedupe_threshold is not None:
                # The nearest live record merges: expired rows are left out (copied only then).
                rows = space.vectors()
                expired = self._expired(key, op.now).get(key, ())
                dead = [e.row for e in expired if e.row is not None]
                live = np.delete(np.arange(len(rows)), dead) if dead else None
                found = rows if live is None else rows[live]
                best = nearest_duplicate(vector, found, op.dedupe_threshold)
                if best is not None:
                    at = best if live is None else int(live[best])
                    old = space.entries[space.row_ids[at]]
                    record = replace(
                        record, id=old.record.id,
                        importance=max(record.importance, old.record.importance),
                    )  # fmt: skip
            if old is not None and not op.keep_times:
                record = replace(record, created_at=old.record.created_at)
            # The caller keeps its value: changing it later must not change the stored one.
            self._store(key, replace(record, value=_copy(record.value)), list(terms), vector)
            stored.append(record)
            written.add(key)
        if op.capacity is not None:
            for key in written:
                self._evict(key, op.capacity, op.now)
        return stored

    def _evict(self, key: str, capacity: int, now: datetime) -> None:
        space = self._spaces.get(key)
        if space is None or len(space.entries) <= capacity:
            return
        ranked = sorted(
            space.entries.values(),
            key=lambda e: (
                _live(e.record, now),
                e.record.importance,
                e.record.last_used_at,
                e.record.id,
            ),
        )
        for entry in ranked[: len(space.entries) - capacity]:
            self._remove(key, space, str(entry.record.id))

    def _get(self, op: ops.GetMemories) -> list[MemoryRecord]:
        space = self._spaces.get(op.namespace)
        found = []
        for record_id in op.ids:
            entry = space.entries.get(record_id) if space else None
            if entry is None or not _live(entry.record, op.now):
                continue
            if op.touch:
                self._touch(op.namespace, entry, op.now)
            found.append(self._out(op.namespace, entry, op.include_embedding))
        return found

    def _touch(self, key: str, entry: _Entry, now: datetime) -> None:
        record = entry.record
        entry.record = replace(record, last_used_at=now, expires_at=expiry(now, record.ttl_seconds))
        if entry.record.expires_at is not None:
            self._expiring[(key, str(record.id))] = entry.record.expires_at

    def _search(self, op: ops.SearchMemories) -> list[MemoryHit]:
        spaces = [(k, sp) for k, sp in self._spaces.items() if k.startswith(op.prefix)]
        candidates: dict[str, tuple[str, _Entry]] = {}
        text_scores: dict[str, float] | None = None
        cosines: dict[str, float] | None = None

        def ok(entry: _Entry) -> bool:
            return _live(entry.record, op.now) and op.filter.matches(entry.record.value)

        if op.terms:
            text_scores = {}
            n_docs, total = 0, 0
            gone = self._expired(op.prefix, op.now) if op.filter.always else {}
            for key, space in spaces:
                if op.filter.always:  # every record counts but the expired ones
                    expired = gone.get(key, [])
                    n_docs += len(space.entries) - len(expired)
                    total += space.total_terms - sum(len(e.terms) for e in expired)
                else:
                    matching = [e for e in space.entries.values() if ok(e)]
                    n_docs += len(matching)
                    total += sum(len(e.terms) for e in matching)
            found: list[tuple[str, _Entry]] = []
            for key, space in spaces:
                ids = set().union(*(space.postings.get(t, ()) for t in op.terms))
                found += [(key, space.entries[i]) for i in sorted(ids) if ok(space.entries[i])]
            df = {t: sum(1 for _, e in found if t in e.terms) for t in op.terms}
            scores = bm25(
                op.terms, [e.terms for _, e in found], n_docs=n_docs,
                avg_len=total / n_docs if n_docs else 0.0, df=df, weights=op.term_weights,
            )  # fmt: skip
            for score, (key, entry) in sorted(zip(scores, found, strict=True), key=lambda s: -s[0])[
                : op.pool
            ]:
                name = key + str(entry.record.id)
                text_scores[name] = score
                candidates[name] = (key, entry)
        if op.vector is not None:
            scored: list[tuple[float, str, _Entry]] = []
            for key, space in spaces:
                if space.row_ids:
                    sims = space.vectors() @ op.vector
                    best = _best_rows(sims, space, ok, op.pool)
                    scored += [(float(sims[r]), key, space.entries[space.row_ids[r]]) for r in best]
            scored.sort(key=lambda s: -s[0])
            cosines = {}
            for sim, key, entry in scored[: op.pool]:
                name = key + str(entry.record.id)
                cosines[name] = sim
                candidates[name] = (key, entry)
            # Text candidates the vector pool missed still get their exact cosine.
            for name, (key, entry) in candidates.items():
                if name not in cosines and entry.row is not None:
                    cosines[name] = float(self._spaces[key].matrix[entry.row] @ op.vector)
        records = {name: entry.record for name, (_, entry) in candidates.items()}
        out = []
        for hit in rank_hits(op, text_scores, cosines, records):
            key = "".join(label + "\x1f" for label in hit.record.namespace)
            entry = self._spaces[key].entries[str(hit.record.id)]
            if op.touch:
                self._touch(key, entry, op.now)
            out.append(replace(hit, record=self._out(key, entry, op.include_embedding)))
        return out

    def _namespaces(self, op: ops.ListMemoryNamespaces) -> list[Namespace]:
        keys = [
            key
            for key, space in self._spaces.items()
            if key.startswith(op.prefix)
            and any(_live(e.record, op.now) for e in space.entries.values())
        ]
        return namespace_page(keys, op)


def _best_rows(
    sims: Matrix, space: _Namespace, ok: Callable[[_Entry], bool], wanted: int
) -> list[int]:
    """The rows with the highest ``sims`` whose entries pass ``ok``, up to ``wanted``, best
    first: more are ranked each round until enough pass, so a filter never cuts results short."""
    k = min(sims.size, max(wanted, 16))
    while True:
        picked = [int(r) for r in top_k(sims, k) if ok(space.entries[space.row_ids[int(r)]])]
        if len(picked) >= wanted or k >= sims.size:
            return picked[:wanted]
        k = min(sims.size, k * 4)


def _stale(entry: _Entry, model: str | None) -> bool:
    """Whether ``entry`` needs a vector from ``model`` (always true when ``model`` is None)."""
    if model is None:
        return True
    return bool(entry.record.text) and (entry.row is None or entry.record.embedding_model != model)
