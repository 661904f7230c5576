"""MemfoldVectorStore answers as LangChain's own vector stores do, on every memory backend with
vector search, sync and async (LangChain's standard suite is in tests/conformance)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memfold.errors import InvalidInput
from memfold.integrations.langchain import MemfoldVectorStore
from memfold.memories import BaseMemoryStore
from tests.support import MEMORY_BACKENDS, Api, drop_checkpoint_store, make_memory_store


@pytest.fixture(params=[*MEMORY_BACKENDS, "chroma", "chroma+http"])
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A fresh memory store of each backend with vector search, with the hashing embedder."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


@pytest.fixture(params=["sync", "async"])
def vs(request: pytest.FixtureRequest, memory_store: BaseMemoryStore) -> Api:
    """A MemfoldVectorStore driven through its sync or async API."""
    store = MemfoldVectorStore(memory_store, namespace=("acme", "docs"))
    return Api(store, request.param == "async")  # type: ignore[arg-type]


async def test_k_zero_returns_no_documents(vs: Api) -> None:
    """Every search asked for ``k=0`` documents (or MMR for ``fetch_k=0``) returns [], as
    LangChain's InMemoryVectorStore does (the similarity searches raised InvalidInput; found
    by differential testing against it), and a negative ``k`` is still refused."""
    await vs.add_texts(["green tea", "black coffee"])
    vector = vs.store.embeddings.embed_query("tea")  # type: ignore[attr-defined]
    assert await vs.similarity_search("tea", k=0) == []
    assert await vs.similarity_search_with_score("tea", k=0) == []
    assert await vs.similarity_search_with_relevance_scores("tea", k=0) == []
    assert await vs.similarity_search_by_vector(vector, k=0) == []
    assert await vs.max_marginal_relevance_search("tea", k=0) == []
    assert await vs.max_marginal_relevance_search("tea", k=1, fetch_k=0) == []
    assert await vs.max_marginal_relevance_search_by_vector(vector, k=1, fetch_k=0) == []
    assert [d.page_content for d in await vs.similarity_search("green tea", k=1)] == ["green tea"]
    with pytest.raises(InvalidInput):
        await vs.similarity_search("tea", k=-1)
