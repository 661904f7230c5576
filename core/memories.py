"""Long-term memory: records in namespaces, searched by words and meaning together.

A `MemoryStore` keeps `MemoryRecord` s under namespace tuples such as ``(tenant, user_id,
scope)``. Writes are atomic upserts (optionally merging near-duplicates and capping each
namespace); reads name a namespace prefix of at least the tenant label, so tenants never see each
other's records. ``search`` fuses BM25 over the text with cosine similarity over the vectors
(`memfold.recall.hybrid`), applies recency decay and ``min_score``, and filters with the one
filter language of `memfold.recall.filters`, returning ``k`` hits whenever ``k`` records match.

A backend subclasses `BaseMemoryStore` and implements ``execute(op)``/``aexecute(op)`` over the
operations in `memfold.memory_ops`; validation, embedding and the sync and async twins are here.

Examples:
    >>> from memfold.memories import open_memory_store
    >>> from memfold.recall.embedders import HashingEmbedder
    >>> store = open_memory_store("memory://", embedder=HashingEmbedder())
    >>> ns = ("acme", "user-1", "prefs")
    >>> _ = store.put(ns, "Prefers green tea in the morning", {"kind": "preference"})
    >>> _ = store.put(ns, "Works on the billing service", {"kind": "fact"})
    >>> [h.record.text for h in store.search(("acme", "user-1"), "what tea does she drink?", k=1)]
    ['Prefers green tea in the morning']
    >>> [r.text for r in store.list_records(("acme",), filter={"kind": {"$ne": "preference"}})]
    ['Works on the billing service']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from memfold import memory_ops as ops
from memfold.encryption import (
    check_plain_record,
    open_memory_hits,
    open_records,
    seal_record,
    take_keyring,
)
from memfold.errors import InvalidInput, UnsupportedOperation
from memfold.limits import DEFAULT_LIMITS, MAX_NAMESPACE_BYTES, MAX_SECONDS, Limits, check_limits
from memfold.memory_model import MemoryHit, MemoryRecord, Namespace
from memfold.model import JSON, utcnow
from memfold.recall import feedback
from memfold.recall.decay import check_decay, recency_factor
from memfold.recall.dedupe import check_threshold
from memfold.recall.embedders import Embedder
from memfold.recall.filters import Filter, FilterSpec, parse_filter
from memfold.recall.hybrid import (
    DEFAULT_TEXT_WEIGHT,
    DEFAULT_VECTOR_WEIGHT,
    check_weights,
    fuse,
)
from memfold.recall.text import terms as text_terms
from memfold.recall.vectors import Matrix, kept_unit, unit
from memfold.redaction import Redactor, check_redactor, take_redactor
from memfold.retention import (
    POLICY_OPTIONS,
    RetentionPolicy,
    Sweepable,
    SweepResult,
    check_policy,
    policy_from_options,
)
from memfold.rotation import Progress, adrive, drive, rotate_memories
from memfold.stores import (
    BaseStore,
    Capabilities,
    check_flag,
    check_id,
    check_time,
    encode_json,
    new_id,
)
from memfold.urls import (
    check_url,
    drop_other_kinds,
    flag,
    split_options,
    take_option,
    take_sql_options,
)

__all__ = [
    "BaseMemoryStore",
    "MemoryHit",
    "MemoryRecord",
    "MemoryStore",
    "Namespace",
    "aopen_memory_store",
    "namespace_key",
    "open_memory_store",
    "prefix_range",
    "rank_hits",
]

T = TypeVar("T")

SEP = "\x1f"
"""Ends each label in a stored namespace key (labels may not contain it)."""
MAX_K = 1_000


def check_namespace(namespace: object, what: str = "namespace") -> Namespace:
    """``namespace`` as a tuple of labels, or `InvalidInput`: a tuple (or list) of one or more
    non-empty str labels, the first being the tenant."""
    if isinstance(namespace, str) or not isinstance(namespace, Sequence) or not namespace:
        raise InvalidInput(
            f"{what} must be a non-empty tuple of str labels, e.g. (tenant, user_id), "
            f"got {namespace!r}"
        )
    labels = tuple(check_id(label, f"{what} label") for label in namespace)
    if any(SEP in label for label in labels):
        raise InvalidInput(f"{what} labels must not contain the unit separator \\x1f")
    size = sum(len(label.encode()) + 1 for label in labels)
    if size > MAX_NAMESPACE_BYTES:
        raise InvalidInput(
            f"{what} is {size} bytes of UTF-8 with a separator per label; the limit is "
            f"{MAX_NAMESPACE_BYTES} (MAX_NAMESPACE_BYTES, fixed by the key columns): use fewer "
            "or shorter labels"
        )
    return labels


def namespace_key(namespace: Namespace) -> str:
    """The stored form of a (checked) namespace: each label followed by ``\\x1f``, so a prefix
    of labels is a prefix of the key and sorts as a contiguous range."""
    return "".join(label + SEP for label in check_namespace(namespace))


def split_key(key: str) -> Namespace:
    """The namespace a `namespace_key` was made from."""
    return tuple(key.split(SEP)[:-1])


def prefix_range(prefix_key: str) -> tuple[str, str]:
    """``(low, high)``: a namespace key starts with ``prefix_key`` iff ``low <= key < high``
    (in code-point order; PostgreSQL columns use the "C" collation for it)."""
    if not isinstance(prefix_key, str) or not prefix_key.endswith(SEP):
        raise InvalidInput(f"a namespace key prefix is a namespace_key, got {prefix_key!r}")
    return prefix_key, prefix_key[:-1] + chr(ord(SEP) + 1)


def _check_memory_id(value: object) -> str:
    """``value`` if it is a usable memory id, else `InvalidInput`: an id holding the unit
    separator could name a record of another namespace where a backend joins the two."""
    record_id = check_id(value, "memory id")
    if SEP in record_id:
        raise InvalidInput("memory ids must not contain the unit separator \\x1f")
    return record_id


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{what} must be an int from {low} to {high}, got {value!r}")
    return value


def _check_unit_interval(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInput(f"{what} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _check_text(text: object, limits: Limits, what: str = "a memory's text") -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a str, got {type(text).__name__}")
    if "\x00" in text:
        raise InvalidInput(f"{what} must not contain NUL characters")
    limits.check("max_memory_text_bytes", what, len(text), "characters or more")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode text: {exc.reason}") from exc
    limits.check("max_memory_text_bytes", what, size, "bytes of UTF-8")
    return text


def storable_text(text: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """``text`` as a memory's text or a query may hold it: a NUL character becomes a space (a
    lone surrogate a ``?``), and the text is cut on a character boundary to
    ``limits.max_memory_text_bytes`` of UTF-8. For adapters that store text they do not
    choose (a chat message holding a NUL, a pasted log), where a refusal would lose the batch.

    Examples:
        >>> storable_text("a\\x00b"), storable_text("naïve", Limits(max_memory_text_bytes=3))
        ('a b', 'na')
    """
    data = text.replace("\x00", " ").encode("utf-8", "replace")
    return data[: limits.max_memory_text_bytes].decode("utf-8", "ignore")


def replace_text(
    store: MemoryStore, namespace: Namespace, record_id: str, text: str
) -> MemoryRecord | None:
    """Give a memory new text, keeping its id, value, importance and time to live, as the
    memory tools' ``update_memory`` does (None: no such memory)."""
    old = store.get(namespace, record_id)
    if old is None:
        return None
    return store.put(
        namespace, text, old.value, id=record_id, importance=old.importance,
        ttl_seconds=old.ttl_seconds,
    )  # fmt: skip


async def areplace_text(
    store: MemoryStore, namespace: Namespace, record_id: str, text: str
) -> MemoryRecord | None:
    """Async `replace_text`."""
    old = await store.aget(namespace, record_id)
    if old is None:
        return None
    return await store.aput(
        namespace, text, old.value, id=record_id, importance=old.importance,
        ttl_seconds=old.ttl_seconds,
    )  # fmt: skip


def _check_ttl(ttl: object) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_SECONDS:
        raise InvalidInput(
            f"ttl_seconds must be a number of seconds from 0 (excluded) to {MAX_SECONDS:,} "
            f"(MAX_SECONDS, 100 years) or None, got {ttl!r}"
        )
    return float(ttl)


def _check_ids(ids: object) -> tuple[str, ...]:
    if isinstance(ids, str):
        ids = (ids,)
    if not isinstance(ids, Sequence):
        raise InvalidInput("ids must be a str or a sequence of str")
    return tuple(dict.fromkeys(_check_memory_id(i) for i in ids))


def _check_policy(policy: object) -> RetentionPolicy:
    """``policy`` if it is a `RetentionPolicy` a memory store can apply."""
    checked = check_policy(policy)
    if checked.ttl_seconds is not None or checked.max_threads is not None:
        raise InvalidInput(
            "memories have no threads, and each record carries its own ttl_seconds: give a "
            "memory store only keep_last and max_age_seconds (policy.for_kind('memories'))"
        )
    return checked


def expiry(now: datetime, ttl_seconds: float | None) -> datetime | None:
    """When a record written (or touched) at ``now`` expires."""
    return None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds)


def namespace_page(keys: Iterable[str], op: ops.ListMemoryNamespaces) -> list[Namespace]:
    """The page of namespaces ``op`` asks for, from the keys of namespaces holding live records
    under its prefix: those whose labels after the tenant end with ``op.suffix`` (a suffix never
    reaches the tenant label), cut to ``max_depth`` labels, sorted and de-duplicated."""
    n = len(op.suffix)
    found: set[Namespace] = set()
    for key in keys:
        namespace = split_key(key)
        if n and (len(namespace) <= n or namespace[-n:] != op.suffix):
            continue
        found.add(namespace[: op.max_depth] if op.max_depth else namespace)
    return sorted(found)[op.offset : op.offset + op.limit]


def rank_hits(
    op: ops.SearchMemories,
    text_scores: Mapping[str, float] | None,
    cosines: Mapping[str, float] | None,
    records: Mapping[str, MemoryRecord],
) -> list[MemoryHit]:
    """The ``op.k`` best hits from each ranking's candidate scores (keys name ``records``):
    fused, decayed, cut at ``min_score``; ties go to the more similar vector (negative
    similarities all fuse to 0), then the newer record, then the lower id, then the lower
    namespace (so the order is total, and equal on every backend)."""
    if not isinstance(op, ops.SearchMemories):
        raise InvalidInput(f"rank_hits ranks for a SearchMemories, got {type(op).__name__}")
    fused = fuse(text_scores, cosines, op.text_weight, op.vector_weight)
    hits = []
    for key, score, t, v in fused:
        record = records.get(key)
        if not isinstance(record, MemoryRecord):
            raise InvalidInput(f"rank_hits has a score for {key!r} but no record of it")
        if op.half_life_seconds is not None and record.updated_at is not None:
            age = (op.now - record.updated_at).total_seconds()
            score *= recency_factor(age, op.half_life_seconds, op.decay_weight)
        if op.min_score is not None and score < op.min_score:
            continue
        hits.append(MemoryHit(record, score, t, v))
    hits.sort(
        key=lambda h: (
            -h.score,
            -2.0 if h.vector_score is None else -h.vector_score,
            -(h.record.updated_at or op.now).timestamp(),
            h.record.id,
            h.record.namespace,
        )
    )
    return hits[: op.k]


def _first_pass(op: ops.SearchMemories) -> ops.SearchMemories:
    """The search whose hits pick a query's expansion terms: at least `feedback.DEPTH` hits,
    none touched (the hits of the final search are: the first's may not be among them)."""
    depth = max(op.k, feedback.DEPTH)
    return replace(op, k=depth, pool=max(op.pool, depth), touch=False)


def _expanded(op: ops.SearchMemories, first: list[MemoryHit]) -> ops.SearchMemories | None:
    """``op`` with the expansion terms ``first`` suggests, or None when it suggests none and
    ``first`` already answers ``op`` (``op`` itself when its hits are to be touched)."""
    extra = feedback.expansion_terms(op.terms, [text_terms(h.record.text) for h in first])
    if extra:
        weights = (1.0,) * len(op.terms) + (feedback.WEIGHT,) * len(extra)
        return replace(op, terms=op.terms + extra, term_weights=weights)
    return op if op.touch else None


def _expiring(records: Sequence[MemoryRecord]) -> dict[Namespace, list[str]]:
    """The ids of ``records`` that have a TTL to restart, by namespace."""
    out: dict[Namespace, list[str]] = {}
    for r in records:
        if r.ttl_seconds is not None and r.id is not None:
            out.setdefault(r.namespace, []).append(r.id)
    return out


def _replaced(
    listed: list[MemoryRecord], touched: Sequence[Sequence[MemoryRecord]]
) -> list[MemoryRecord]:
    """``listed`` with each record that was touched in its touched form."""
    fresh = {(r.namespace, r.id): r for group in touched for r in group}
    return [fresh.get((r.namespace, r.id), r) for r in listed]


def _by_namespace(hits: Sequence[MemoryHit]) -> dict[Namespace, list[str]]:
    """The ids of the records ``hits`` found, by namespace."""
    out: dict[Namespace, list[str]] = {}
    for h in hits:
        out.setdefault(h.record.namespace, []).append(str(h.record.id))
    return out


def _touched_hits(
    hits: list[MemoryHit], touched: Sequence[Sequence[MemoryRecord]]
) -> list[MemoryHit]:
    """``hits`` with each record that was touched in its touched form."""
    records = _replaced([h.record for h in hits], touched)
    return [replace(h, record=r) for h, r in zip(hits, records, strict=True)]


@runtime_checkable
class MemoryStore(Sweepable, Protocol):
    """Long-term memories by namespace, searched by text and vector, with sync and async APIs."""

    limits: Limits

    @property
    def capabilities(self) -> Capabilities: ...

    def setup(self) -> int: ...
    async def asetup(self) -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
    def resolve_tenant(self, tenant: str | None) -> str: ...

    def put(
        self,
        namespace: Namespace,
        text: str = "",
        value: Mapping[str, JSON] | None = None,
        *,
        id: str | None = None,
        embedding: Sequence[float] | None = None,
        importance: float = 0.5,
        ttl_seconds: float | None = None,
    ) -> MemoryRecord: ...
    async def aput(
        self,
        namespace: Namespace,
        text: str = "",
        value: Mapping[str, JSON] | None = None,
        *,
        id: str | None = None,
        embedding: Sequence[float] | None = None,
        importance: float = 0.5,
        ttl_seconds: float | None = None,
    ) -> MemoryRecord: ...
    def put_many(
        self, records: Sequence[MemoryRecord], *, dedupe_threshold: float | None = ...
    ) -> list[MemoryRecord]: ...
    async def aput_many(
        self, records: Sequence[MemoryRecord], *, dedupe_threshold: float | None = ...
    ) -> list[MemoryRecord]: ...
    def get(
        self, namespace: Namespace, id: str, *, touch: bool = False, include_embedding: bool = False
    ) -> MemoryRecord | None: ...
    async def aget(
        self, namespace: Namespace, id: str, *, touch: bool = False, include_embedding: bool = False
    ) -> MemoryRecord | None: ...
    def get_many(
        self,
        namespace: Namespace,
        ids: Sequence[str],
        *,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]: ...
    async def aget_many(
        self,
        namespace: Namespace,
        ids: Sequence[str],
        *,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]: ...
    def delete(self, namespace: Namespace, ids: str | Sequence[str]) -> int: ...
    async def adelete(self, namespace: Namespace, ids: str | Sequence[str]) -> int: ...
    def delete_where(self, prefix: Namespace, filter: FilterSpec | None = None) -> int: ...
    async def adelete_where(self, prefix: Namespace, filter: FilterSpec | None = None) -> int: ...
    def list_records(
        self,
        prefix: Namespace,
        *,
        filter: FilterSpec | None = None,
        limit: int = 100,
        offset: int = 0,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]: ...
    async def alist_records(
        self,
        prefix: Namespace,
        *,
        filter: FilterSpec | None = None,
        limit: int = 100,
        offset: int = 0,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]: ...
    def count(self, prefix: Namespace, *, filter: FilterSpec | None = None) -> int: ...
    async def acount(self, prefix: Namespace, *, filter: FilterSpec | None = None) -> int: ...
    def search(
        self,
        prefix: Namespace,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        filter: FilterSpec | None = None,
        k: int = 10,
        offset: int = 0,
        text_weight: float = ...,
        vector_weight: float = ...,
        min_score: float | None = None,
        half_life_seconds: float | None = None,
        decay_weight: float = 0.5,
        touch: bool = False,
        include_embedding: bool = False,
        expand_query: bool = True,
    ) -> list[MemoryHit]: ...
    async def asearch(
        self,
        prefix: Namespace,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        filter: FilterSpec | None = None,
        k: int = 10,
        offset: int = 0,
        text_weight: float = ...,
        vector_weight: float = ...,
        min_score: float | None = None,
        half_life_seconds: float | None = None,
        decay_weight: float = 0.5,
        touch: bool = False,
        include_embedding: bool = False,
        expand_query: bool = True,
    ) -> list[MemoryHit]: ...
    def list_namespaces(
        self,
        prefix: Namespace,
        *,
        suffix: Namespace = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]: ...
    async def alist_namespaces(
        self,
        prefix: Namespace,
        *,
        suffix: Namespace = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]: ...
    def reembed(
        self,
        prefix: Namespace,
        *,
        batch_size: int = 64,
        force: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> int: ...
    async def areembed(
        self,
        prefix: Namespace,
        *,
        batch_size: int = 64,
        force: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> int: ...


class BaseMemoryStore(BaseStore):
    """The public `MemoryStore` API, written once over ``execute``/``aexecute``.

    Args:
        capabilities: what the backend can do.
        embedder: makes vectors for records written without one, and for text queries (None:
            only vectors you pass are stored, and text queries rank by words alone).
        dimensions: the vector length (default: the embedder's); vectors of another length are
            refused with `InvalidInput`.
        dedupe_threshold: default cosine similarity at which a write merges into an existing
            record of its namespace (None: never merge).
        capacity: keep at most this many records per namespace, evicting the least important,
            then least recently used (None: no limit).
        text_weight: default weight of the text ranking in ``search`` (None: 0.5).
        vector_weight: default weight of the vector ranking in ``search`` (None: 0.5).
        retention: what `sweep` removes besides expired records when called without a policy
            (``keep_last`` and ``max_age_seconds``; see `memfold.retention`).
    """

    def __init__(
        self,
        capabilities: Capabilities,
        *,
        embedder: Embedder | None = None,
        dimensions: int | None = None,
        dedupe_threshold: float | None = None,
        capacity: int | None = None,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        super().__init__(capabilities)
        self.retention = _check_policy(retention or RetentionPolicy())
        if embedder is not None and not isinstance(embedder, Embedder):
            raise InvalidInput("embedder must have model, dimensions, embed and aembed")
        self.embedder = embedder
        dims = dimensions if dimensions is not None else (embedder and embedder.dimensions)
        self.dimensions: int | None = (
            None if dims is None else _check_int(dims, "dimensions", 1, 16_000)
        )
        self.dedupe_threshold = check_threshold(dedupe_threshold)
        self.capacity = None if capacity is None else _check_int(capacity, "capacity", 1, 10**9)
        self.text_weight = DEFAULT_TEXT_WEIGHT if text_weight is None else text_weight
        self.vector_weight = DEFAULT_VECTOR_WEIGHT if vector_weight is None else vector_weight
        check_weights(self.text_weight, self.vector_weight)

    _redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor | None:
        """What redacts records (text and value) before they are embedded and stored (None, the
        default: nothing does)."""
        return self._redactor

    @redactor.setter
    def redactor(self, redactor: Redactor | None) -> None:
        self._redactor = check_redactor(redactor)

    # Building operations: pure, shared by the sync and async twins.

    def _vector(self, vector: Sequence[float] | Matrix) -> Matrix:
        if not self._capabilities.vector_search:
            self._capabilities.require("vector_search", self.name)
        self._check_length(vector)
        return unit(vector, self.dimensions)

    def _check_length(self, vector: object) -> None:
        if hasattr(vector, "__len__"):
            self.limits.check("max_vector_dimensions", "an embedding", len(vector), "dimensions")

    def _check_records(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        if isinstance(records, MemoryRecord) or not isinstance(records, Sequence):
            raise InvalidInput("put_many takes a sequence of MemoryRecord")
        seen: set[tuple[Namespace, str]] = set()
        checked = []
        for r in records:
            if not isinstance(r, MemoryRecord):
                raise InvalidInput(f"put_many takes MemoryRecord items, got {type(r).__name__}")
            namespace = check_namespace(r.namespace)
            record_id = _check_memory_id(r.id or new_id())
            if (namespace, record_id) in seen:
                raise InvalidInput(f"memory id {record_id!r} appears twice in one write")
            seen.add((namespace, record_id))
            if not isinstance(r.value, Mapping):
                raise InvalidInput("a memory's value must be a JSON object (a dict)")
            text = _check_text(r.text, self.limits, f"the text of memory {record_id!r}")
            check_plain_record(text, r.value, f"memory {record_id!r}")
            record = MemoryRecord(
                namespace,
                record_id,
                text,
                dict(r.value),
                r.embedding,
                r.embedding_model,
                _check_unit_interval(r.importance, "importance"),
                _check_ttl(r.ttl_seconds),
            )
            redactor = self._redactor
            checked.append(record if redactor is None else redactor.redact_record(record))
        return checked

    def _default_weights(self) -> tuple[float, float]:
        """The store's text and vector weights, or vectors alone when it encrypts the text."""
        return (0.0, 1.0) if self._keyring is not None else (self.text_weight, self.vector_weight)

    def _filter(self, filter: FilterSpec | None) -> Filter:
        parsed = parse_filter(filter)
        if self._keyring is not None and not parsed.always:
            raise UnsupportedOperation(
                "this store encrypts memory values (it has a keyring), so filters over them "
                "cannot run: filter the records after reading them, or keep what you filter "
                "on in the namespace"
            )
        return parsed

    def _to_embed(self, records: list[MemoryRecord]) -> list[int]:
        """Positions of the records the embedder should make vectors for."""
        if self.embedder is None or not self._capabilities.vector_search:
            return []
        return [i for i, r in enumerate(records) if r.embedding is None and r.text]

    def _put_op(
        self,
        records: list[MemoryRecord],
        made: Sequence[Sequence[float]],
        positions: list[int],
        dedupe_threshold: float | None,
    ) -> ops.PutMemories:
        now = utcnow()
        model = self.embedder.model if self.embedder is not None else None
        vectors: list[Matrix | None] = []
        models: list[str | None] = []
        fresh = dict(zip(positions, made, strict=True))
        for i, r in enumerate(records):
            if i in fresh:
                vectors.append(self._vector(fresh[i]))
                models.append(model)
            elif r.embedding is not None:
                vectors.append(self._vector(r.embedding))
                models.append(r.embedding_model)
            else:
                vectors.append(None)
                models.append(None)
        stamped = tuple(
            MemoryRecord(
                r.namespace,
                r.id,
                r.text,
                r.value,
                None,
                m,
                r.importance,
                r.ttl_seconds,
                now,
                now,
                now,
                expiry(now, r.ttl_seconds),
            )
            for r, m in zip(records, models, strict=True)
        )
        return self._write_op(stamped, vectors, now, check_threshold(dedupe_threshold))

    def _write_op(
        self,
        stamped: tuple[MemoryRecord, ...],
        vectors: Sequence[Matrix | None],
        now: datetime,
        dedupe_threshold: float | None,
        *,
        keep_times: bool = False,
    ) -> ops.PutMemories:
        """The write of ``stamped`` (checked records, times filled) with their vectors,
        encrypted with the store's keyring."""
        values = tuple(
            encode_json(
                r.value,
                f"the value of memory {r.id!r}",
                self.limits,
                "max_memory_value_bytes",
                nul=False,
            )
            for r in stamped
        )
        keyring = self._keyring
        if keyring is not None:  # the limits are on what was written, not on its ciphertext
            stamped = tuple(seal_record(keyring, r) for r in stamped)
            values = tuple(encode_json(r.value, f"memory {r.id!r}") for r in stamped)
        return ops.PutMemories(
            stamped,
            values,
            tuple(() if keyring else tuple(text_terms(r.text)) for r in stamped),  # no words
            tuple(vectors),
            now,
            dedupe_threshold,
            None if keep_times else self.capacity,
            keep_times,
        )

    def _restore_op(self, records: Sequence[MemoryRecord]) -> ops.PutMemories:
        if isinstance(records, MemoryRecord) or not isinstance(records, Sequence):
            raise InvalidInput("restore_many takes a sequence of MemoryRecord")
        for r in records:
            if isinstance(r, MemoryRecord) and r.id is None:
                raise InvalidInput("restore_many needs each record's id: use put to add new ones")
        checked = self._check_records(records)
        stamped = []
        vectors: list[Matrix | None] = []
        for c, r in zip(checked, records, strict=True):
            vector = None if r.embedding is None else self._kept_vector(r.embedding)
            if c.text != r.text:  # redacted here: the vector was made from the words removed
                vector = None
            vectors.append(vector)
            record = MemoryRecord(
                c.namespace, c.id, c.text, c.value, None,
                None if vector is None else r.embedding_model, c.importance, c.ttl_seconds,
                check_time(r.created_at, "a memory's created_at"),
                check_time(r.updated_at, "a memory's updated_at"),
                check_time(r.last_used_at, "a memory's last_used_at"),
                None if r.expires_at is None else check_time(r.expires_at, "expires_at"),
            )  # fmt: skip
            stamped.append(record)
        return self._write_op(tuple(stamped), vectors, utcnow(), None, keep_times=True)

    def _kept_vector(self, vector: Sequence[float]) -> Matrix:
        if not self._capabilities.vector_search:
            self._capabilities.require("vector_search", self.name)
        self._check_length(vector)
        return kept_unit(vector, self.dimensions)

    def _search_op(
        self,
        prefix: Namespace,
        query: str | None,
        vector: Sequence[float] | None,
        query_vector: Sequence[float] | None,
        filter: FilterSpec | None,
        k: int,
        text_weight: float | None,
        vector_weight: float | None,
        min_score: float | None,
        half_life_seconds: float | None,
        decay_weight: float,
        touch: bool,
        include_embedding: bool,
    ) -> ops.SearchMemories:
        query_terms: tuple[str, ...] = ()
        if query is not None:
            query_terms = tuple(dict.fromkeys(text_terms(_check_text(query, self.limits, "query"))))
        wanted = vector if vector is not None else query_vector
        default_tw, default_vw = self._default_weights()
        tw, vw = check_weights(
            default_tw if text_weight is None else text_weight,
            default_vw if vector_weight is None else vector_weight,
        )
        if query is not None and tw > 0 and not self.capabilities.full_text_search:
            self.capabilities.require("full_text_search", self.name)
        if self._keyring is not None and wanted is None and self._capabilities.vector_search:
            raise UnsupportedOperation(
                "an encrypted store searches by vectors: give it an embedder or pass vector="
            )
        if min_score is not None and (
            isinstance(min_score, bool)
            or not isinstance(min_score, int | float)
            or not math.isfinite(min_score)
        ):
            raise InvalidInput(f"min_score must be a finite number or None, got {min_score!r}")
        check_decay(half_life_seconds, decay_weight)
        k = _check_int(k, "k", 1, MAX_K)
        terms = query_terms if tw > 0 else ()
        qvec = None if wanted is None or vw == 0 else self._vector(wanted)
        # One ranking, undecayed, orders the hits as it does its candidates: its best k are
        # the answer. Fusion or decay can lift lower candidates, so they get a wider pool.
        alone = (not terms or qvec is None) and half_life_seconds is None
        return ops.SearchMemories(
            namespace_key(check_namespace(prefix, "namespace prefix")),
            terms,
            qvec,
            self._filter(filter),
            k,
            utcnow(),
            tw,
            vw,
            min_score,
            half_life_seconds,
            decay_weight,
            k if alone else max(100, 4 * k),
            bool(touch),
            bool(include_embedding),
        )

    def _query_text(
        self, query: str | None, vector: Sequence[float] | None, vector_weight: float | None
    ) -> str | None:
        """The text to embed for a search (None: no embedding needed)."""
        if query is None and vector is None:
            raise InvalidInput(
                "search needs a query text or a vector: use list_records() to browse"
            )
        if vector is not None or query is None or self.embedder is None:
            return None
        if (self._default_weights()[1] if vector_weight is None else vector_weight) == 0:
            return None
        if not self._capabilities.vector_search:
            return None
        return _check_text(query, self.limits, "query")

    def _get_op(
        self, namespace: Namespace, ids: Sequence[str], touch: bool, include_embedding: bool
    ) -> ops.GetMemories:
        return ops.GetMemories(
            namespace_key(check_namespace(namespace)),
            _check_ids(ids),
            utcnow(),
            bool(touch),
            bool(include_embedding),
        )

    def _list_op(
        self,
        prefix: Namespace,
        filter: FilterSpec | None,
        limit: int,
        offset: int,
        include_embedding: bool,
        stale_model: str | None = None,
    ) -> ops.ListMemories:
        return ops.ListMemories(
            namespace_key(check_namespace(prefix, "namespace prefix")),
            self._filter(filter),
            _check_int(limit, "limit", 1, 10_000),
            _check_int(offset, "offset", 0, 10**12),
            utcnow(),
            bool(include_embedding),
            stale_model,
        )

    def _namespaces_op(
        self,
        prefix: Namespace,
        suffix: Namespace,
        max_depth: int | None,
        limit: int,
        offset: int,
    ) -> ops.ListMemoryNamespaces:
        return ops.ListMemoryNamespaces(
            namespace_key(check_namespace(prefix, "namespace prefix")),
            check_namespace(suffix, "suffix") if suffix else (),
            None if max_depth is None else _check_int(max_depth, "max_depth", 1, 1_000),
            _check_int(limit, "limit", 1, 10_000),
            _check_int(offset, "offset", 0, 10**12),
            utcnow(),
        )

    def _reembed_ops(
        self, prefix: Namespace, force: bool, batch_size: int
    ) -> tuple[str, ops.CountMemories, Callable[[int], ops.ListMemories]]:
        if self.embedder is None:
            raise InvalidInput("reembed needs a store opened with an embedder")
        self._capabilities.require("vector_search", self.name)
        _check_int(batch_size, "batch_size", 1, 10_000)
        model = self.embedder.model
        # force: every record with text counts as stale (no model is named "").
        stale = "" if force else model
        count = ops.CountMemories(
            namespace_key(check_namespace(prefix, "namespace prefix")), parse_filter(None),
            utcnow(), stale,
        )  # fmt: skip

        def page(offset: int) -> ops.ListMemories:
            return self._list_op(prefix, None, batch_size, offset, False, stale)

        return model, count, page

    def _embedding_ops(
        self, batch: list[MemoryRecord], vectors: list[list[float]], model: str
    ) -> list[ops.SetEmbeddings]:
        """One `SetEmbeddings` per namespace of a reembed batch."""
        by_namespace: dict[Namespace, list[int]] = {}
        for i, r in enumerate(batch):
            by_namespace.setdefault(r.namespace, []).append(i)
        return [
            ops.SetEmbeddings(
                namespace_key(namespace),
                tuple(str(batch[i].id) for i in positions),
                tuple(self._vector(vectors[i]) for i in positions),
                model,
            )
            for namespace, positions in by_namespace.items()
        ]

    @staticmethod
    def _with_embeddings(stored: list[MemoryRecord], op: ops.PutMemories) -> list[MemoryRecord]:
        out = []
        for r, v in zip(stored, op.vectors, strict=True):
            embedding = None if v is None else tuple(float(x) for x in v)
            out.append(
                MemoryRecord(
                    r.namespace,
                    r.id,
                    r.text,
                    r.value,
                    embedding,
                    r.embedding_model,
                    r.importance,
                    r.ttl_seconds,
                    r.created_at,
                    r.updated_at,
                    r.last_used_at,
                    r.expires_at,
                )
            )
        return out

    def _one(
        self,
        namespace: Namespace,
        text: str,
        value: Mapping[str, JSON] | None,
        id: str | None,
        embedding: Sequence[float] | None,
        importance: float,
        ttl_seconds: float | None,
    ) -> MemoryRecord:
        return MemoryRecord(
            check_namespace(namespace), id, text, {} if value is None else value,
            None if embedding is None else tuple(embedding), None, importance, ttl_seconds,
        )  # fmt: skip

    # Sync API.

    def put(
        self,
        namespace: Namespace,
        text: str = "",
        value: Mapping[str, JSON] | None = None,
        *,
        id: str | None = None,
        embedding: Sequence[float] | None = None,
        importance: float = 0.5,
        ttl_seconds: float | None = None,
    ) -> MemoryRecord:
        """Store one memory (replacing the record with the same ``id``, or merging into a
        near-duplicate when the store has a ``dedupe_threshold``); returns it as stored.

        Raises:
            InvalidInput: a bad namespace, id or value, or an embedding that is NaN, infinite,
                all zeros or of the wrong length.
        """
        record = self._one(namespace, text, value, id, embedding, importance, ttl_seconds)
        return self.put_many([record])[0]

    def put_many(
        self, records: Sequence[MemoryRecord], *, dedupe_threshold: float | None = -1.0
    ) -> list[MemoryRecord]:
        """Store records in one atomic write (texts embedded in one batch); returns them as
        stored, in order. ``dedupe_threshold`` overrides the store's default (None: no merge)."""
        checked = self._check_records(records)
        positions = self._to_embed(checked)
        made = self._embed([checked[i].text for i in positions]) if positions else []
        threshold = self.dedupe_threshold if dedupe_threshold == -1.0 else dedupe_threshold
        op = self._put_op(checked, made, positions, threshold)
        return open_records(self._keyring, self._with_embeddings(self.execute(op), op))

    def restore_many(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        """Store records as another store (or an export) held them, in one atomic write: ids,
        times, expiry and vectors with their model kept, nothing embedded, merged or evicted;
        a live record with the same id is replaced. Returns them as stored.

        For imports and migrations: new memories go through `put`, which stamps the time.

        Raises:
            InvalidInput: a record without an id or one of its times, or a bad vector.
            UnsupportedOperation: a record has a vector and the backend lacks vector search.
        """
        op = self._restore_op(records)
        return open_records(self._keyring, self._with_embeddings(self.execute(op), op))

    def _embed(self, texts: list[str], kind: Any = "document") -> list[list[float]]:
        assert self.embedder is not None
        vectors = self.embedder.embed(texts, kind=kind)
        if len(vectors) != len(texts):
            raise InvalidInput(f"the embedder returned {len(vectors)} vectors for {len(texts)}")
        return vectors

    async def _aembed(self, texts: list[str], kind: Any = "document") -> list[list[float]]:
        assert self.embedder is not None
        vectors = await self.embedder.aembed(texts, kind=kind)
        if len(vectors) != len(texts):
            raise InvalidInput(f"the embedder returned {len(vectors)} vectors for {len(texts)}")
        return vectors

    def get(
        self, namespace: Namespace, id: str, *, touch: bool = False, include_embedding: bool = False
    ) -> MemoryRecord | None:
        """The live record ``id`` of ``namespace``, or None. ``touch`` marks it used now and
        restarts its TTL."""
        found = self.get_many(namespace, (id,), touch=touch, include_embedding=include_embedding)
        return found[0] if found else None

    def get_many(
        self,
        namespace: Namespace,
        ids: Sequence[str],
        *,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]:
        """The live records of ``ids`` in ``namespace``, in that order; missing ids are skipped."""
        found = self.execute(self._get_op(namespace, ids, touch, include_embedding))
        return open_records(self._keyring, found)

    def delete(self, namespace: Namespace, ids: str | Sequence[str]) -> int:
        """Delete records by id; returns how many existed."""
        return self.execute(
            ops.DeleteMemories(namespace_key(check_namespace(namespace)), _check_ids(ids))
        )

    def delete_where(self, prefix: Namespace, filter: FilterSpec | None = None) -> int:
        """Delete every record under ``prefix`` passing ``filter`` (all of them when None) in
        one transaction; returns how many."""
        return self.execute(
            ops.DeleteMemoriesWhere(
                namespace_key(check_namespace(prefix, "namespace prefix")), self._filter(filter)
            )
        )

    def list_records(
        self,
        prefix: Namespace,
        *,
        filter: FilterSpec | None = None,
        limit: int = 100,
        offset: int = 0,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]:
        """A page of the live records under ``prefix`` passing ``filter``, oldest first (ties by
        id, then namespace, on every backend). ``touch`` marks those with a TTL used now and
        restarts it (as `get` and `search` do)."""
        found = self.execute(self._list_op(prefix, filter, limit, offset, include_embedding))
        listed = open_records(self._keyring, found)
        if not touch:
            return listed
        touched = [
            self.get_many(ns, ids, touch=True, include_embedding=include_embedding)
            for ns, ids in _expiring(listed).items()
        ]
        return _replaced(listed, touched)

    def count(self, prefix: Namespace, *, filter: FilterSpec | None = None) -> int:
        """How many live records under ``prefix`` pass ``filter``."""
        return self.execute(
            ops.CountMemories(
                namespace_key(check_namespace(prefix, "namespace prefix")),
                self._filter(filter),
                utcnow(),
            )
        )

    def search(
        self,
        prefix: Namespace,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        filter: FilterSpec | None = None,
        k: int = 10,
        offset: int = 0,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        min_score: float | None = None,
        half_life_seconds: float | None = None,
        decay_weight: float = 0.5,
        touch: bool = False,
        include_embedding: bool = False,
        expand_query: bool = True,
    ) -> list[MemoryHit]:
        """The ``k`` best records under ``prefix`` for ``query`` (ranked by its words and, with
        an embedder, its meaning) or for ``vector``, best first.

        Only records passing ``filter`` are ranked, so ``k`` hits come back whenever ``k``
        records match (and, with ``min_score``, score at least that). ``half_life_seconds``
        turns on recency decay (``decay_weight`` of the score halves each half-life); weights
        default to the store's. ``touch`` marks the hits used now. ``expand_query`` adds the
        words the best hits of a first search share to a text query and searches again
        (`memfold.recall.feedback`). ``offset`` skips that many of the best hits (a page
        further; those skipped are not touched).

        Raises:
            InvalidInput: neither ``query`` nor ``vector``, or a bad filter or vector.
            UnsupportedOperation: the backend lacks the ranking asked for, or the store
                encrypts (it ranks by vectors alone) and has no embedder to embed ``query``
                with, and no ``vector`` is given.
        """
        text = self._query_text(query, vector, vector_weight)
        qv = self._embed([text], "query")[0] if text is not None else None
        k = _check_int(k, "k", 1, MAX_K)
        offset = _check_int(offset, "offset", 0, MAX_K - k)
        op = self._search_op(
            prefix, query, vector, qv, filter, offset + k, text_weight, vector_weight,
            min_score, half_life_seconds, decay_weight, touch and not offset, include_embedding,
        )  # fmt: skip
        if not (expand_query and op.terms):
            hits = self.execute(op)
        else:
            first = self.execute(_first_pass(op))
            second = _expanded(op, first)
            hits = first[: op.k] if second is None else self.execute(second)
        page = open_memory_hits(self._keyring, hits[offset:])
        if not (touch and offset):
            return page
        touched = [
            self.get_many(ns, ids, touch=True, include_embedding=include_embedding)
            for ns, ids in _by_namespace(page).items()
        ]
        return _touched_hits(page, touched)

    def list_namespaces(
        self,
        prefix: Namespace,
        *,
        suffix: Namespace = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]:
        """The namespaces holding live records under ``prefix`` (whose labels after the tenant
        end with ``suffix``: a suffix never matches the tenant label), cut to ``max_depth``
        labels, sorted, de-duplicated, then paged."""
        return self.execute(self._namespaces_op(prefix, suffix, max_depth, limit, offset))

    def _sweep_op(
        self, policy: RetentionPolicy | None, tenant: str | None, dry_run: bool
    ) -> ops.SweepMemories:
        if not isinstance(dry_run, bool):
            raise InvalidInput(f"dry_run must be a bool, got {dry_run!r}")
        policy = self.retention if policy is None else _check_policy(policy)
        if tenant is None and not self.require_tenant:
            prefix = ""
        else:
            prefix = namespace_key((self.resolve_tenant(tenant),))
        return ops.SweepMemories(utcnow(), policy, prefix, dry_run)

    def sweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Delete the expired records (they are never returned even before this), then what a
        retention policy (the store's own by default) removes: records created more than
        ``max_age_seconds`` ago, and all but the newest ``keep_last`` of each namespace.

        ``tenant`` limits it to the namespaces starting with that label; with ``dry_run``,
        count what would go and change nothing. Returns the records removed.
        """
        return SweepResult(records=self.execute(self._sweep_op(policy, tenant, dry_run)))

    def reembed(
        self,
        prefix: Namespace,
        *,
        batch_size: int = 64,
        force: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Re-embed the records under ``prefix`` whose vector is missing or was made by a
        model other than the store's embedder (every record with text when ``force``);
        returns how many. ``progress(done, total)`` is called after each batch."""
        model, count, page = self._reembed_ops(prefix, force, batch_size)
        total, done = self.execute(count), 0
        while True:
            # Re-embedded records stop being stale (unless forced), so the next page of stale
            # records starts at 0 again; forced runs page through by offset.
            batch = open_records(self._keyring, self.execute(page(done if force else 0)))
            if not batch:
                return done
            vectors = self._embed([r.text for r in batch])
            for embedding_op in self._embedding_ops(batch, vectors, model):
                self.execute(embedding_op)
            done += len(batch)
            if progress is not None:
                progress(done, max(total, done))

    # Async API: the same operations, awaited.

    async def aput(
        self,
        namespace: Namespace,
        text: str = "",
        value: Mapping[str, JSON] | None = None,
        *,
        id: str | None = None,
        embedding: Sequence[float] | None = None,
        importance: float = 0.5,
        ttl_seconds: float | None = None,
    ) -> MemoryRecord:
        """Async `put`."""
        record = self._one(namespace, text, value, id, embedding, importance, ttl_seconds)
        return (await self.aput_many([record]))[0]

    async def aput_many(
        self, records: Sequence[MemoryRecord], *, dedupe_threshold: float | None = -1.0
    ) -> list[MemoryRecord]:
        """Async `put_many`."""
        checked = self._check_records(records)
        positions = self._to_embed(checked)
        made = await self._aembed([checked[i].text for i in positions]) if positions else []
        threshold = self.dedupe_threshold if dedupe_threshold == -1.0 else dedupe_threshold
        op = self._put_op(checked, made, positions, threshold)
        return open_records(self._keyring, self._with_embeddings(await self.aexecute(op), op))

    async def arestore_many(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
        """Async `restore_many`."""
        op = self._restore_op(records)
        return open_records(self._keyring, self._with_embeddings(await self.aexecute(op), op))

    async def aget(
        self, namespace: Namespace, id: str, *, touch: bool = False, include_embedding: bool = False
    ) -> MemoryRecord | None:
        """Async `get`."""
        found = await self.aget_many(
            namespace, (id,), touch=touch, include_embedding=include_embedding
        )
        return found[0] if found else None

    async def aget_many(
        self,
        namespace: Namespace,
        ids: Sequence[str],
        *,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]:
        """Async `get_many`."""
        found = await self.aexecute(self._get_op(namespace, ids, touch, include_embedding))
        return open_records(self._keyring, found)

    async def adelete(self, namespace: Namespace, ids: str | Sequence[str]) -> int:
        """Async `delete`."""
        return await self.aexecute(
            ops.DeleteMemories(namespace_key(check_namespace(namespace)), _check_ids(ids))
        )

    async def adelete_where(self, prefix: Namespace, filter: FilterSpec | None = None) -> int:
        """Async `delete_where`."""
        return await self.aexecute(
            ops.DeleteMemoriesWhere(
                namespace_key(check_namespace(prefix, "namespace prefix")), self._filter(filter)
            )
        )

    async def alist_records(
        self,
        prefix: Namespace,
        *,
        filter: FilterSpec | None = None,
        limit: int = 100,
        offset: int = 0,
        touch: bool = False,
        include_embedding: bool = False,
    ) -> list[MemoryRecord]:
        """Async `list_records`."""
        found = await self.aexecute(self._list_op(prefix, filter, limit, offset, include_embedding))
        listed = open_records(self._keyring, found)
        if not touch:
            return listed
        touched = [
            await self.aget_many(ns, ids, touch=True, include_embedding=include_embedding)
            for ns, ids in _expiring(listed).items()
        ]
        return _replaced(listed, touched)

    async def acount(self, prefix: Namespace, *, filter: FilterSpec | None = None) -> int:
        """Async `count`."""
        return await self.aexecute(
            ops.CountMemories(
                namespace_key(check_namespace(prefix, "namespace prefix")),
                self._filter(filter),
                utcnow(),
            )
        )

    async def asearch(
        self,
        prefix: Namespace,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        filter: FilterSpec | None = None,
        k: int = 10,
        offset: int = 0,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        min_score: float | None = None,
        half_life_seconds: float | None = None,
        decay_weight: float = 0.5,
        touch: bool = False,
        include_embedding: bool = False,
        expand_query: bool = True,
    ) -> list[MemoryHit]:
        """Async `search`."""
        text = self._query_text(query, vector, vector_weight)
        qv = (await self._aembed([text], "query"))[0] if text is not None else None
        k = _check_int(k, "k", 1, MAX_K)
        offset = _check_int(offset, "offset", 0, MAX_K - k)
        op = self._search_op(
            prefix, query, vector, qv, filter, offset + k, text_weight, vector_weight,
            min_score, half_life_seconds, decay_weight, touch and not offset, include_embedding,
        )  # fmt: skip
        if not (expand_query and op.terms):
            hits = await self.aexecute(op)
        else:
            first = await self.aexecute(_first_pass(op))
            second = _expanded(op, first)
            hits = first[: op.k] if second is None else await self.aexecute(second)
        page = open_memory_hits(self._keyring, hits[offset:])
        if not (touch and offset):
            return page
        touched = [
            await self.aget_many(ns, ids, touch=True, include_embedding=include_embedding)
            for ns, ids in _by_namespace(page).items()
        ]
        return _touched_hits(page, touched)

    async def alist_namespaces(
        self,
        prefix: Namespace,
        *,
        suffix: Namespace = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]:
        """Async `list_namespaces`."""
        return await self.aexecute(self._namespaces_op(prefix, suffix, max_depth, limit, offset))

    async def asweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Async `sweep`."""
        found = await self.aexecute(self._sweep_op(policy, tenant, dry_run))
        return SweepResult(records=found)

    async def areembed(
        self,
        prefix: Namespace,
        *,
        batch_size: int = 64,
        force: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Async `reembed`."""
        model, count, page = self._reembed_ops(prefix, force, batch_size)
        total, done = await self.aexecute(count), 0
        while True:
            batch = open_records(self._keyring, await self.aexecute(page(done if force else 0)))
            if not batch:
                return done
            vectors = await self._aembed([r.text for r in batch])
            for embedding_op in self._embedding_ops(batch, vectors, model):
                await self.aexecute(embedding_op)
            done += len(batch)
            if progress is not None:
                progress(done, max(total, done))

    # Key rotation.

    def rotate_key(
        self,
        prefix: Namespace,
        *,
        batch_size: int = 500,
        progress: Progress | None = None,
    ) -> int:
        """Re-encrypt the live records under ``prefix`` (text and value) under the keyring's
        active key (plain ones too), ``batch_size`` at a time, keeping their times, vectors and
        TTLs; returns how many were rewritten. Expired records are swept first. Idempotent.
        ``progress(done, total)`` counts records read.

        Raises:
            InvalidInput: the store has no keyring, or a bad prefix.
            EncryptionError: a record's key is not in the keyring.
        """
        key = namespace_key(check_namespace(prefix, "namespace prefix"))
        return drive(rotate_memories(self, key, batch_size, progress), self.execute)

    async def arotate_key(
        self,
        prefix: Namespace,
        *,
        batch_size: int = 500,
        progress: Progress | None = None,
    ) -> int:
        """Async `rotate_key`."""
        key = namespace_key(check_namespace(prefix, "namespace prefix"))
        return await adrive(rotate_memories(self, key, batch_size, progress), self.aexecute)


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "dimensions": int,
    "dedupe_threshold": float,
    "capacity": int,
    "text_weight": float,
    "vector_weight": float,
    **POLICY_OPTIONS,
}


def _with_policy(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with its retention options (`POLICY_OPTIONS`) made into ``retention``; a
    URL shared with threads may name their options too, which memories have no use for."""
    if any(k in options for k in POLICY_OPTIONS):
        options["retention"] = policy_from_options(options).for_kind("memories")
    return options


def _build(url: str, options: Mapping[str, Any]) -> BaseMemoryStore:
    check_url(url)
    url = drop_other_kinds(url, "memories")
    # Accepted so one URL opens every store kind: a namespace always names its tenant.
    url, rest, require = take_option(url, options, "require_tenant", flag)
    require_tenant = check_flag(require, "require_tenant")
    url, rest, redactor = take_redactor(url, rest)
    url, rest, keyring = take_keyring(url, rest)
    store = _backend(url, rest)
    store.require_tenant = require_tenant
    store.redactor = redactor
    store.keyring = keyring
    return store


def _backend(url: str, options: Mapping[str, Any]) -> BaseMemoryStore:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from memfold.backends.memory_memories import MemoryMemoryStore

        ours = _with_policy(split_options(url, _OPTIONS, strict=True)[1])
        return MemoryMemoryStore(**{**ours, **options})
    if parts.scheme.split("+")[0] in ("sqlite", "postgresql", "postgres"):
        from memfold.backends.sql.memory_store import SQLMemoryStore

        plain, options = take_sql_options(url, options)
        plain, ours = split_options(plain, _OPTIONS, strict=False)
        return SQLMemoryStore(plain, **{**_with_policy(ours), **options})
    if parts.scheme in ("chroma", "chroma+http"):
        from memfold.backends.chroma.store import ChromaMemoryStore

        plain, ours = split_options(url, _OPTIONS, strict=True)
        return ChromaMemoryStore(plain, **{**_with_policy(ours), **options})
    if parts.scheme in ("redis", "rediss", "unix"):
        from memfold.backends.redis.memory_store import RedisMemoryStore

        plain, ours = split_options(url, {**_OPTIONS, "key_prefix": str}, strict=False)
        return RedisMemoryStore(plain, **{**_with_policy(ours), **options})
    raise InvalidInput(
        f"unknown memory store URL {url!r}: use memory://, sqlite:///path.db, postgresql://..., "
        "chroma:///dir, chroma+http://host:port or redis://host:port/0"
    )


def open_memory_store(
    url: str = "memory://", *, setup: bool = True, limits: Limits | None = None, **options: Any
) -> BaseMemoryStore:
    """Open the memory store at ``url`` and (unless ``setup=False``) create its schema.

    URL query options: ``dimensions``, ``dedupe_threshold``, ``capacity``, ``text_weight``,
    ``vector_weight``, and the retention options ``keep_last`` and ``max_age_seconds`` (see
    `memfold.retention`; ``ttl_seconds`` and ``max_threads`` are the threads', left out here)
    (e.g. ``memory://?capacity=1000``); keyword ``options`` go to the
    backend (``embedder=``, and ``schema``/``table_prefix`` and the driver options for SQL),
    except ``redactor=`` (or ``?redact=default``), which redacts records before they are
    embedded and stored (see `memfold.redaction`), and ``keyring=`` (or ``?keyring=env``),
    which encrypts their text and value at rest (see `memfold.encryption`). ``limits`` caps
    the size of what the store accepts (`memfold.limits.Limits`; None: the defaults).
    """
    store = _build(url, options)
    store.limits = check_limits(limits)
    if setup:
        store.setup()
    return store


async def aopen_memory_store(
    url: str = "memory://", *, setup: bool = True, limits: Limits | None = None, **options: Any
) -> BaseMemoryStore:
    """Async `open_memory_store`: the schema is created without blocking the event loop."""
    store = _build(url, options)
    store.limits = check_limits(limits)
    if setup:
        await store.asetup()
    return store
