"""LangChain ``Embeddings`` as a memfold `Embedder`, and the reverse.

`EmbeddingsEmbedder` lets a memory store embed with any LangChain model (the store records its
``model`` name beside each vector); `MemfoldEmbeddings` hands a store's embedder to LangChain
code that wants ``Embeddings``.

Examples:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> embedder = EmbeddingsEmbedder(DeterministicFakeEmbedding(size=4), dimensions=4)
    >>> len(embedder.embed(["green tea"])[0]), embedder.model
    (4, 'DeterministicFakeEmbedding')
    >>> len(MemfoldEmbeddings(embedder).embed_query("tea"))
    4
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.embeddings import Embeddings

from memfold.recall.embedders import Embedder, Kind, check_embed_args

__all__ = ["EmbeddingsEmbedder", "MemfoldEmbeddings"]


class EmbeddingsEmbedder:
    """A LangChain ``Embeddings`` as a memfold `Embedder`: documents go through
    ``embed_documents``, queries through ``embed_query`` (and their async twins).

    Args:
        embeddings: the LangChain model.
        model: the name recorded with each vector (default: the class name, plus its
            ``model`` or ``model_name`` attribute when it has one).
        dimensions: the vector length, if known (checked on every write).
    """

    def __init__(
        self, embeddings: Embeddings, *, model: str | None = None, dimensions: int | None = None
    ) -> None:
        self.embeddings = embeddings
        name = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None)
        kind = type(embeddings).__name__
        self._model = model or (f"{kind}:{name}" if isinstance(name, str) else kind)
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        """The name recorded with each vector."""
        return self._model

    @property
    def dimensions(self) -> int | None:
        """The vector length, if given."""
        return self._dimensions

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """One vector per text."""
        texts = check_embed_args(texts, kind)
        if kind == "query":
            return [self.embeddings.embed_query(t) for t in texts]
        return self.embeddings.embed_documents(texts)

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        """Async `embed`."""
        texts = check_embed_args(texts, kind)
        if kind == "query":
            return [await self.embeddings.aembed_query(t) for t in texts]
        return await self.embeddings.aembed_documents(texts)


class MemfoldEmbeddings(Embeddings):
    """A memfold `Embedder` as a LangChain ``Embeddings``."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return self.embedder.embed(check_embed_args(texts))

    def embed_query(self, text: str) -> list[float]:
        """The vector of a search text."""
        return self.embedder.embed(check_embed_args([text], "query"), kind="query")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async `embed_documents`."""
        return await self.embedder.aembed(check_embed_args(texts))

    async def aembed_query(self, text: str) -> list[float]:
        """Async `embed_query`."""
        return (await self.embedder.aembed(check_embed_args([text], "query"), kind="query"))[0]
