"""Memory records as Chroma items, and memfold filters as Chroma ``where`` clauses: pure, no I/O.

One Chroma collection holds a store's records. An item's id is the record's namespace key
followed by its id (`memfold.memories.namespace_key`), its document is the text, and its
embedding the unit vector (a record without one gets a placeholder and ``_v: False``, so vector
queries skip it). Its metadata holds:

- ``_ns`` (the namespace key) and ``_p1``, ``_p2``, ... (the key of its first 1, 2, ... labels),
  so a namespace prefix is one equality test;
- ``_r``: the record's value and fields as JSON (what is read back, exactly);
- ``_exp`` (expiry in µs since the epoch, `NEVER` when none) and ``_created``, as ints for
  ``where`` tests; ``_model`` (the embedding model), ``_v``, ``_len`` (its number of terms) and
  ``_terms`` (its search terms, repeats kept for BM25; ``$contains`` finds them);
- ``v.a.b``: each scalar field of the value reachable by a filter path (not null; an int
  beyond 64 bits as the nearest float), so filters are pushed down to Chroma.

Chroma merges an upsert's metadata into the item's: `replacing` removes the keys the new
version lacks.

A pushed-down ``where`` (`to_where`) selects a superset of what the filter selects: parts Chroma
cannot express exactly (``$ne``, ``$exists``, ``$type``, null, string order) are left out, and
the store applies the core's predicate (`memfold.recall.filters.Filter.matches`) to what Chroma
returns.
Chroma compares an int field with a float bound truncated to an int, and a float field with an
int bound rounded to a float, so ``$gt`` and ``$lt`` with a bound that is not exact both ways
are pushed down as ``$gte`` and ``$lte``.

Examples:
    >>> from memfold.recall.filters import parse_filter
    >>> to_where(parse_filter({"kind": "fact", "n": {"$gte": 2}, "tag": {"$ne": "x"}}))
    {'$and': [{'v.kind': {'$eq': 'fact'}}, {'v.n': {'$gte': 2}}]}
    >>> to_where(parse_filter({"n": {"$lt": 0.5}}))
    {'v.n': {'$lte': 0.5}}
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

import numpy as np

from memfold.memories import namespace_key, split_key
from memfold.memory_model import MemoryRecord
from memfold.recall.filters import Filter, _All, _Any, _Compare
from memfold.recall.vectors import Matrix

__all__ = [
    "NEVER",
    "Where",
    "all_of",
    "any_of",
    "item_id",
    "metadata",
    "micros",
    "placeholder",
    "record",
    "replacing",
    "to_where",
    "under",
]

Where: TypeAlias = dict[str, Any]
"""A Chroma ``where`` clause."""

NEVER: Final = 2**62
"""The ``_exp`` of a record that never expires."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INT64: Final = 2**63


def micros(when: datetime) -> int:
    """``when`` in µs since the epoch."""
    return (when - _EPOCH) // timedelta(microseconds=1)


def _time(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def item_id(ns_key: str, record_id: str) -> str:
    """The Chroma id of record ``record_id`` in the namespace keyed ``ns_key``."""
    return ns_key + record_id


def placeholder(dimensions: int) -> Matrix:
    """The vector stored for a record without one (never searched: ``_v`` is False); an
    array like the real vectors, as Chroma refuses a batch mixing lists and arrays."""
    vector = np.zeros(dimensions, dtype=np.float32)
    vector[0] = 1.0
    return vector


def _flatten(value: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
    for key, item in value.items():
        if not key or key.isdigit() or any(c in key for c in '."\\\x00$'):
            continue  # no filter path reaches it
        name = f"{path}.{key}"
        if isinstance(item, Mapping):
            _flatten(item, name, out)
        elif isinstance(item, bool | str | float):
            out[name] = item
        elif isinstance(item, int):
            out[name] = item if -_INT64 <= item < _INT64 else _nearest_float(item)


def _nearest_float(value: int) -> float:
    """The float nearest ``value`` (the largest float, signed, when none is that large): a
    rounding that keeps order, so inclusive tests on it select a superset."""
    try:
        return float(value)
    except OverflowError:
        return sys.float_info.max if value > 0 else -sys.float_info.max


def metadata(
    record: MemoryRecord, value_json: str, terms: Sequence[str], has_vector: bool
) -> Where:
    """The Chroma metadata of ``record`` (its times, ids and namespace filled)."""
    ns_key = namespace_key(record.namespace)
    fields: dict[str, Any] = {
        "_ns": ns_key,
        "_r": encode_fields(record, value_json),
        "_exp": NEVER if record.expires_at is None else micros(record.expires_at),
        "_created": micros(record.created_at or _EPOCH),
        "_v": has_vector,
        "_len": len(terms),
    }
    for depth in range(1, len(record.namespace) + 1):
        fields[f"_p{depth}"] = namespace_key(record.namespace[:depth])
    if record.embedding_model is not None:
        fields["_model"] = record.embedding_model
    if terms:
        fields["_terms"] = list(terms)
    _flatten(record.value, "v", fields)
    return fields


def replacing(meta: Where, old: Mapping[str, Any] | None) -> Where:
    """``meta`` for an upsert over an item whose metadata is ``old`` (None: no item): Chroma
    keeps the old keys an upsert leaves out, so each is set to None, which removes it."""
    if not old:
        return meta
    return {**dict.fromkeys(old.keys() - meta.keys()), **meta}


def encode_fields(record: MemoryRecord, value_json: str) -> str:
    """The ``_r`` JSON: every field but namespace, text and embedding (value kept verbatim)."""
    times = [
        None if t is None else micros(t)
        for t in (record.created_at, record.updated_at, record.last_used_at, record.expires_at)
    ]
    head = json.dumps([record.id, record.embedding_model, record.importance, record.ttl_seconds])
    return f"[{head},{json.dumps(times)},{value_json}]"


def record(
    meta: Mapping[str, Any], text: str | None, embedding: Sequence[float] | Matrix | None = None
) -> MemoryRecord:
    """The record an item holds (``embedding`` is attached when given and ``_v`` is set)."""
    head, times, value = json.loads(meta["_r"])
    record_id, model, importance, ttl = head
    created, updated, used, expires = (_time(t) for t in times)
    vector = None
    if embedding is not None and meta.get("_v"):
        vector = tuple(float(x) for x in np.asarray(embedding, dtype=np.float32))
    return MemoryRecord(
        split_key(meta["_ns"]), record_id, text or "", value, vector, model, importance, ttl,
        created, updated, used, expires,
    )  # fmt: skip


def all_of(*clauses: Where | None) -> Where | None:
    """The conjunction of the clauses given (None when there are none)."""
    parts = [c for c in clauses if c]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def any_of(clauses: Sequence[Where]) -> Where:
    """The disjunction of one or more clauses."""
    return clauses[0] if len(clauses) == 1 else {"$or": list(clauses)}


def under(prefix_key: str, now: datetime | None) -> Where:
    """Items whose namespace starts with the key ``prefix_key`` (live at ``now``, if given)."""
    depth = prefix_key.count("\x1f")
    where: Where = {f"_p{depth}": {"$eq": prefix_key}}
    if now is None:
        return where
    return {"$and": [where, {"_exp": {"$gt": micros(now)}}]}


def to_where(spec: Filter) -> Where | None:
    """A ``where`` selecting a superset of what ``spec`` selects (None: no pushdown)."""
    if isinstance(spec, _Compare):
        bound, op = spec.value, spec.op
        if bound is None or (op != "$eq" and isinstance(bound, str)):
            return None  # null is not stored; Chroma orders only numbers
        if op in ("$gt", "$lt") and not (isinstance(bound, int) and float(bound) == bound):
            op += "e"  # not exact as both an int and a float (see the module docstring)
        return {"v." + ".".join(spec.path): {op: bound}}
    if isinstance(spec, _All):
        return all_of(*(to_where(f) for f in spec.items))
    if isinstance(spec, _Any):
        parts = [to_where(f) for f in spec.items]
        if not parts or any(p is None for p in parts):
            return None
        return any_of([p for p in parts if p is not None])
    return None
