"""Long-term memory operations as data (see `memfold.ops`): `memfold.memories.BaseMemoryStore`
validates, embeds and builds them; a backend's ``execute``/``aexecute`` runs them.

Namespaces travel as `memfold.memories.namespace_key` strings; vectors as unit float32 arrays;
``now`` is stamped by the public method so every backend sees the same clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from memfold.memory_model import MemoryHit, MemoryRecord, Namespace
from memfold.ops import Op
from memfold.recall.filters import Filter
from memfold.recall.vectors import Matrix
from memfold.retention import RetentionPolicy

__all__ = [
    "CountMemories",
    "DeleteMemories",
    "DeleteMemoriesWhere",
    "GetMemories",
    "ListMemories",
    "ListMemoryNamespaces",
    "PutMemories",
    "SearchMemories",
    "SetEmbeddings",
    "SweepMemories",
]


@dataclass(frozen=True, slots=True)
class PutMemories(Op[list[MemoryRecord]]):
    """Upsert records atomically; returns them as stored (a merged near-duplicate under the id
    it kept), without embeddings.

    ``records`` have ids, times and expiry filled and ``embedding`` None; ``values`` holds each
    value's JSON, ``terms`` each text's search terms, ``vectors`` each unit vector (or None).
    With ``dedupe_threshold``, a record with a vector whose id is new merges into the most similar
    record of its namespace at or above that cosine similarity. With ``capacity``, each namespace
    written keeps that many records, evicting the least important (then least recently used).
    With ``keep_times`` (a restore), every record is stored with the four times it carries, a
    live record with its id keeping nothing of its own.
    """

    records: tuple[MemoryRecord, ...]
    values: tuple[str, ...]
    terms: tuple[tuple[str, ...], ...]
    vectors: tuple[Matrix | None, ...]
    now: datetime
    dedupe_threshold: float | None = None
    capacity: int | None = None
    keep_times: bool = False


@dataclass(frozen=True, slots=True)
class GetMemories(Op[list[MemoryRecord]]):
    """The live records of ``ids`` in one namespace, in the order asked (missing ones left out);
    ``touch`` sets their last-used time and restarts their TTL."""

    namespace: str
    ids: tuple[str, ...]
    now: datetime
    touch: bool = False
    include_embedding: bool = False


@dataclass(frozen=True, slots=True)
class DeleteMemories(Op[int]):
    """Delete records by id in one namespace; returns how many existed."""

    namespace: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeleteMemoriesWhere(Op[int]):
    """Delete every record under a namespace prefix that passes ``filter``; returns how many."""

    prefix: str
    filter: Filter


@dataclass(frozen=True, slots=True)
class ListMemories(Op[list[MemoryRecord]]):
    """Live records under a namespace prefix passing ``filter``, oldest first, then by id, then
    by namespace key (a total order, the same on every backend, so offsets page it).

    ``stale_model`` keeps only records with text whose vector is missing or was made by another
    model (what ``reembed`` redoes).
    """

    prefix: str
    filter: Filter
    limit: int
    offset: int
    now: datetime
    include_embedding: bool = False
    stale_model: str | None = None


@dataclass(frozen=True, slots=True)
class CountMemories(Op[int]):
    """How many live records under a namespace prefix pass ``filter``."""

    prefix: str
    filter: Filter
    now: datetime
    stale_model: str | None = None


@dataclass(frozen=True, slots=True)
class SearchMemories(Op[list[MemoryHit]]):
    """Rank live records under a prefix passing ``filter`` by text and/or vector.

    The text ranking runs when ``terms`` is non-empty, the vector ranking when ``vector`` is
    set; each proposes its best ``pool`` candidates (more when needed to fill ``k``), which are
    scored by `memfold.memories.rank_hits`.
    """

    prefix: str
    terms: tuple[str, ...]
    vector: Matrix | None
    filter: Filter
    k: int
    now: datetime
    text_weight: float
    vector_weight: float
    min_score: float | None = None
    half_life_seconds: float | None = None
    decay_weight: float = 0.0
    pool: int = 100
    touch: bool = False
    include_embedding: bool = False
    term_weights: tuple[float, ...] = ()
    """One BM25 weight per term (empty: all 1), for terms added by query expansion."""


@dataclass(frozen=True, slots=True)
class ListMemoryNamespaces(Op[list[Namespace]]):
    """Distinct namespaces holding live records under ``prefix`` whose labels after the tenant
    end with ``suffix``, cut to ``max_depth`` labels, sorted, then paged
    (`memfold.memories.namespace_page`)."""

    prefix: str
    suffix: Namespace
    max_depth: int | None
    limit: int
    offset: int
    now: datetime


@dataclass(frozen=True, slots=True)
class SetEmbeddings(Op[int]):
    """Replace the vectors of records (by id, in one namespace) and record ``model``; returns
    how many records were updated. Times are left alone."""

    namespace: str
    ids: tuple[str, ...]
    vectors: tuple[Matrix, ...]
    model: str


@dataclass(frozen=True, slots=True)
class SweepMemories(Op[int]):
    """Delete every record under ``prefix`` (a namespace key prefix; "" for all) expired at
    ``now`` (through the expiry index), then those ``policy`` removes: records created more
    than ``max_age_seconds`` ago, and all but the newest ``keep_last`` of each namespace. With
    ``dry_run``, only count. With ``scrub`` (after a key rotation), SQLite's full-text index is
    rewritten so no segment keeps the words of records rewritten or deleted. Returns how many
    records went."""

    now: datetime
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)
    prefix: str = ""
    dry_run: bool = False
    scrub: bool = False
