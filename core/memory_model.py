"""Long-term memory records and search hits: plain frozen dataclasses, host-free.

A record lives in a *namespace*, a tuple of labels such as ``(tenant, user_id, scope)``; the
first label is the tenant, and every read names a namespace prefix of at least that label, so
one tenant's calls never see another's records.

Examples:
    >>> r = MemoryRecord(("acme", "u1"), text="likes green tea", value={"kind": "preference"})
    >>> r.namespace, r.value["kind"]
    (('acme', 'u1'), 'preference')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from memfold.model import JSON

__all__ = ["BYTES_KEY", "MemoryHit", "MemoryRecord", "Namespace"]

BYTES_KEY: Final = "b64"
"""The value key of a key-value entry's bytes, base64-encoded (LangChain's
``MemfoldKVStore``): a record with no text whose value has this key alone is one, and
redaction leaves its bytes as they are."""

Namespace = tuple[str, ...]
"""A record's place, e.g. ``(tenant, user_id, scope)``; labels are non-empty str without NUL
or the unit separator ``\\x1f``."""


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """One long-term memory.

    To write, fill ``namespace``, ``text`` and/or ``value`` (and optionally ``id``,
    ``embedding``, ``importance``, ``ttl_seconds``); the store assigns the rest. Reads return
    every field filled (``embedding`` only when asked for with ``include_embedding=True``).
    """

    namespace: Namespace
    id: str | None = None
    """Unique within the namespace; assigned (a UUIDv7 hex) when None."""
    text: str = ""
    """What full-text search matches and, by default, what is embedded."""
    value: Mapping[str, JSON] = field(default_factory=dict)
    """A JSON object; metadata filters address its fields (``"a.b"`` for nested ones)."""
    embedding: tuple[float, ...] | None = None
    """The vector searched by meaning; made by the store's embedder when None."""
    embedding_model: str | None = None
    """Which model made ``embedding`` (``memfold reembed`` redoes vectors of other models)."""
    importance: float = 0.5
    """From 0 to 1; a full namespace evicts the least important records first."""
    ttl_seconds: float | None = None
    """Expire this long after the last write (or the last touching read); None: never."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_used_at: datetime | None = None
    """When a read with ``touch=True`` last returned the record (else its last write)."""
    expires_at: datetime | None = None
    """When the record stops being returned (None: never); swept by ``sweep()``."""


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """A search result: the record and how well it matched (higher is better).

    ``score`` is the fused score after recency decay: ``text_weight * text_score +
    vector_weight * vector_score``, each part normalised to 0..1 (see `memfold.recall.hybrid`).
    """

    record: MemoryRecord
    score: float
    text_score: float | None = None
    """The BM25 score divided by the best in the candidate set (None: no text ranking)."""
    vector_score: float | None = None
    """The cosine similarity, from -1 to 1 (None: no vector ranking or no vector)."""
