"""LlamaIndex ``BaseEmbedding`` as a memfold `Embedder`, and the reverse.

`LlamaIndexEmbedder` lets a memory store embed with any LlamaIndex model; `MemfoldEmbedding`
hands a store's embedder to LlamaIndex (``VectorStoreIndex(embed_model=...)``,
``VectorMemoryBlock``), so documents indexed there and memories written elsewhere share one
vector space.

Examples:
    >>> from memfold.recall.embedders import HashingEmbedder
    >>> embed_model = MemfoldEmbedding(HashingEmbedder(dimensions=8))
    >>> len(embed_model.get_query_embedding("green tea"))
    8
    >>> LlamaIndexEmbedder(embed_model).model
    'memfold:hashing-8'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr, ValidationError

from memfold.errors import InvalidInput
from memfold.recall.embedders import Embedder, Kind, check_embed_args

__all__ = ["LlamaIndexEmbedder", "MemfoldEmbedding"]


class LlamaIndexEmbedder:
    """A LlamaIndex ``BaseEmbedding`` as a memfold `Embedder` (documents through the text
    embedding calls, queries through the query ones, sync and async).

    Args:
        embed_model: the LlamaIndex model.
        dimensions: the vector length, if known (checked on every write).
    """

    def __init__(self, embed_model: BaseEmbedding, *, dimensions: int | None = None) -> None:
        self.embed_model = embed_model
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        """The LlamaIndex model's ``model_name``."""
        return str(self.embed_model.model_name)

    @property
    def dimensions(self) -> int | None:
        """The vector length, if given."""
        return self._dimensions

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """One vector per text (`InvalidInput` when LlamaIndex refuses what its model made)."""
        texts = check_embed_args(texts, kind)
        try:
            if kind == "query":
                return [self.embed_model.get_query_embedding(t) for t in texts]
            return self.embed_model.get_text_embedding_batch(texts)
        except ValidationError as exc:
            raise _refused(self.model, exc) from exc

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """Async `embed`."""
        texts = check_embed_args(texts, kind)
        try:
            if kind == "query":
                return [await self.embed_model.aget_query_embedding(t) for t in texts]
            return await self.embed_model.aget_text_embedding_batch(texts)
        except ValidationError as exc:
            raise _refused(self.model, exc) from exc


def _refused(model: str, error: ValidationError) -> InvalidInput:
    """What to raise when LlamaIndex's own events refuse its model's output (a vector that is
    not a list of numbers)."""
    return InvalidInput(
        f"the LlamaIndex embedding model {model!r} returned something that is not one list of "
        f"numbers per text: fix the model. LlamaIndex said: {error.errors()[0]['msg']}"
    )


class MemfoldEmbedding(BaseEmbedding):
    """A memfold `Embedder` as a LlamaIndex ``BaseEmbedding``."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=f"memfold:{embedder.model}", **kwargs)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed(check_embed_args([query], "query"), kind="query")[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._embedder.aembed(check_embed_args([query], "query"), kind="query"))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed(check_embed_args([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(check_embed_args(texts))

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._embedder.aembed(check_embed_args([text])))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._embedder.aembed(check_embed_args(texts))
