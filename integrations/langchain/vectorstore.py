"""A LangChain ``VectorStore`` over a memfold memory store.

A document is a memory record in the vector store's namespace: ``page_content`` is its text,
``metadata`` its JSON value and ``id`` its id. Searches rank by words and meaning together
(the store's weights; pass ``text_weight=0`` for pure vector order) and filter with memfold's
filter language (`memfold.recall.filters`), which is the ``$eq``/``$in``/``$and`` dialect
``langchain-postgres`` uses. Scores are the store's fused scores, from 0 to 1, higher better.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from memfold.errors import InvalidInput
from memfold.integrations.langchain.embeddings import EmbeddingsEmbedder, MemfoldEmbeddings
from memfold.memories import (
    MemoryHit,
    MemoryRecord,
    MemoryStore,
    Namespace,
    check_namespace,
    open_memory_store,
)
from memfold.stores import new_id

__all__ = ["MemfoldVectorStore"]


def _document(record: MemoryRecord) -> Document:
    return Document(page_content=record.text, metadata=dict(record.value), id=record.id)


def _scored(hits: list[MemoryHit]) -> list[tuple[Document, float]]:
    return [(_document(h.record), h.score) for h in hits]


class MemfoldVectorStore(VectorStore):
    """LangChain documents as memfold memories, searched by text and vector together.

    Args:
        store: a memfold memory store, or its URL (opened with ``embedding`` as its embedder).
        embedding: the LangChain embedding model, when ``store`` is a URL; a store object
            embeds with its own embedder.
        namespace: where the documents live, ``(tenant, ...)``; searches cover it and the
            namespaces under it (None: ``(default tenant, "documents")``, which a store opened
            with ``require_tenant`` refuses).
        options: passed to `memfold.memories.open_memory_store` with a URL.

    Examples:
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> vs = MemfoldVectorStore("memory://", embedding=DeterministicFakeEmbedding(size=8))
        >>> vs.add_texts(["green tea", "black coffee"], [{"kind": "tea"}, {"kind": "coffee"}])
        ... # doctest: +ELLIPSIS
        [...]
        >>> [d.page_content for d in vs.similarity_search("tea", k=1, filter={"kind": "tea"})]
        ['green tea']
    """

    def __init__(
        self,
        store: MemoryStore | str = "memory://",
        *,
        embedding: Embeddings | None = None,
        namespace: Namespace | None = None,
        **options: Any,
    ) -> None:
        if isinstance(store, str):
            embedder = None if embedding is None else EmbeddingsEmbedder(embedding)
            store = open_memory_store(store, embedder=embedder, **options)
        elif embedding is not None or options:
            raise InvalidInput(
                "a store object embeds with its own embedder: open it with "
                "embedder=EmbeddingsEmbedder(embedding), or pass a URL here"
            )
        self.store: MemoryStore = store
        self.namespace = (
            (store.resolve_tenant(None), "documents")
            if namespace is None
            else check_namespace(namespace)
        )
        self._embedding = embedding

    @property
    def embeddings(self) -> Embeddings | None:
        """The embedding model (the store's embedder, seen as LangChain ``Embeddings``)."""
        embedder = getattr(self.store, "embedder", None)
        if self._embedding is not None or embedder is None:
            return self._embedding
        return MemfoldEmbeddings(embedder)

    def _records(self, documents: list[Document], ids: Sequence[str | None] | None) -> list[Any]:
        if not isinstance(documents, Sequence) or not all(
            isinstance(d, Document) for d in documents
        ):
            raise InvalidInput("documents must be a list of LangChain Document")
        if ids is not None and (isinstance(ids, str) or not isinstance(ids, Sequence)):
            raise InvalidInput(f"ids must be a list of str or None, got {type(ids).__name__}")
        if ids is not None and len(ids) != len(documents):
            raise InvalidInput(f"got {len(ids)} ids for {len(documents)} documents")
        chosen = ids or [d.id for d in documents]
        return [
            MemoryRecord(self.namespace, new_id() if i in (None, "") else i, d.page_content,
                         d.metadata)
            for d, i in zip(documents, chosen, strict=True)
        ]  # fmt: skip

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[Any, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Upsert ``texts`` (with ``metadatas`` and ``ids``, if given) as documents."""
        return self.add_documents(_documents(texts, metadatas), ids=ids)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[Any, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async `add_texts`."""
        return await self.aadd_documents(_documents(texts, metadatas), ids=ids)

    def add_documents(
        self, documents: list[Document], ids: Sequence[str | None] | None = None, **kwargs: Any
    ) -> list[str]:
        """Upsert documents (by id; new ids for those without); returns their ids."""
        stored = self.store.put_many(self._records(documents, ids), dedupe_threshold=None)
        return [str(r.id) for r in stored]

    async def aadd_documents(
        self, documents: list[Document], ids: Sequence[str | None] | None = None, **kwargs: Any
    ) -> list[str]:
        """Async `add_documents`."""
        records = self._records(documents, ids)
        return [str(r.id) for r in await self.store.aput_many(records, dedupe_threshold=None)]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete documents by id (missing ids are fine); ``None`` deletes every document in
        the namespace and under it."""
        if ids is None:
            self.store.delete_where(self.namespace)
        elif ids:
            self.store.delete(self.namespace, ids)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Async `delete`."""
        if ids is None:
            await self.store.adelete_where(self.namespace)
        elif ids:
            await self.store.adelete(self.namespace, ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents of ``ids`` (missing ones left out)."""
        return [_document(r) for r in self.store.get_many(self.namespace, ids)]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async `get_by_ids`."""
        return [_document(r) for r in await self.store.aget_many(self.namespace, ids)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` best documents for ``query`` with their scores (0..1, higher better);
        ``kwargs`` (``filter``, ``text_weight``, ``min_score``, …) go to the store's search."""
        if _none_wanted(k):
            return []
        return _scored(self.store.search(self.namespace, query, k=k, **kwargs))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async `similarity_search_with_score`."""
        if _none_wanted(k):
            return []
        return _scored(await self.store.asearch(self.namespace, query, k=k, **kwargs))

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` best documents for ``query``, best first."""
        return [d for d, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async `similarity_search`."""
        return [d for d, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents nearest to ``embedding``."""
        if _none_wanted(k):
            return []
        hits = self.store.search(self.namespace, vector=embedding, k=k, **kwargs)
        return [_document(h.record) for h in hits]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Async `similarity_search_by_vector`."""
        if _none_wanted(k):
            return []
        hits = await self.store.asearch(self.namespace, vector=embedding, k=k, **kwargs)
        return [_document(h.record) for h in hits]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents near ``embedding`` and unlike each other, from the ``fetch_k``
        nearest."""
        _check_mmr(k, lambda_mult)
        if _none_wanted(fetch_k):
            return []
        hits = self.store.search(
            self.namespace, vector=embedding, k=fetch_k, include_embedding=True, **kwargs
        )
        return _diverse(embedding, hits, k, lambda_mult)

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Async `max_marginal_relevance_search_by_vector`."""
        _check_mmr(k, lambda_mult)
        if _none_wanted(fetch_k):
            return []
        hits = await self.store.asearch(
            self.namespace, vector=embedding, k=fetch_k, include_embedding=True, **kwargs
        )
        return _diverse(embedding, hits, k, lambda_mult)

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """`max_marginal_relevance_search_by_vector` for the embedding of ``query``."""
        vector = self._needs_embeddings().embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """Async `max_marginal_relevance_search`."""
        vector = await self._needs_embeddings().aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    def _needs_embeddings(self) -> Embeddings:
        if self.embeddings is None:
            raise InvalidInput("MMR search needs a store with an embedder: open it with one")
        return self.embeddings

    def _select_relevance_score_fn(self) -> Any:
        return lambda score: score  # fused scores are already 0..1, higher better

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[Any, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: str = "memory://",
        namespace: Namespace | None = None,
        **kwargs: Any,
    ) -> Self:
        """A vector store at the URL ``store`` holding ``texts``."""
        documents = _documents(texts, metadatas)
        vs = cls(store, embedding=embedding, namespace=namespace, **kwargs)
        vs.add_documents(documents, ids=ids)
        return vs

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[Any, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: str = "memory://",
        namespace: Namespace | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async `from_texts` (the store's schema is created without blocking the loop)."""
        from memfold.memories import aopen_memory_store

        documents = _documents(texts, metadatas)
        opened = await aopen_memory_store(store, embedder=EmbeddingsEmbedder(embedding), **kwargs)
        vs = cls(opened, namespace=namespace)
        vs._embedding = embedding
        await vs.aadd_documents(documents, ids=ids)
        return vs


def _documents(texts: object, metadatas: object) -> list[Document]:
    """Documents of ``texts`` and ``metadatas``, or `InvalidInput`."""
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise InvalidInput(f"texts must be a list of str, got {type(texts).__name__}")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise InvalidInput("each text must be a str")
    if metadatas is None:
        metadatas = [{}] * len(texts)
    if not isinstance(metadatas, Sequence) or len(metadatas) != len(texts):
        raise InvalidInput("metadatas must be a list of dicts, one per text")
    if not all(isinstance(m, dict) for m in metadatas):
        raise InvalidInput("each of metadatas must be a dict")
    return [Document(page_content=t, metadata=m) for t, m in zip(texts, metadatas, strict=True)]


def _none_wanted(k: object) -> bool:
    """Whether ``k`` is 0: no documents are wanted, and the answer is [] (as from LangChain's
    own stores), never a search for none."""
    return isinstance(k, int) and not isinstance(k, bool) and k == 0


def _check_mmr(k: object, lambda_mult: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InvalidInput(f"k must be an int >= 0, got {k!r}")
    if (
        isinstance(lambda_mult, bool)
        or not isinstance(lambda_mult, int | float)
        or not 0 <= lambda_mult <= 1
    ):
        raise InvalidInput(f"lambda_mult must be a number from 0 to 1, got {lambda_mult!r}")


def _diverse(
    query: Iterable[float], hits: list[MemoryHit], k: int, lambda_mult: float
) -> list[Document]:
    with_vectors = [h for h in hits if h.record.embedding is not None]
    if not with_vectors:
        return []
    vectors = [list(h.record.embedding or ()) for h in with_vectors]
    chosen = maximal_marginal_relevance(np.array(list(query)), vectors, lambda_mult, k)
    return [_document(with_vectors[i].record) for i in chosen]
