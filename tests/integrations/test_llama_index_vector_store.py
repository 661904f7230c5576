"""MemfoldVectorStore serves LlamaIndex's VectorStoreIndex and VectorMemoryBlock on every memory
backend with vector search (Chroma embedded and over HTTP too), with metadata filters run in the
store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory, VectorMemoryBlock
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from memfold.errors import UnsupportedOperation
from memfold.integrations.llama_index import MemfoldEmbedding, MemfoldVectorStore
from memfold.memories import BaseMemoryStore
from tests.support import MEMORY_BACKENDS, drop_checkpoint_store, make_memory_store

NS = ("acme", "docs")
DOCS = [
    Document(text=text, doc_id=doc_id, metadata={"kind": kind, "n": n})
    for text, doc_id, kind, n in [
        ("Green tea is brewed at 80 degrees", "tea", "tea", 1),
        ("Espresso needs finely ground coffee", "coffee", "coffee", 2),
        ("Oolong tea sits between green and black", "oolong", "tea", 3),
    ]
]


@pytest.fixture(params=[*MEMORY_BACKENDS, "chroma", "chroma+http"])
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A fresh memory store of each backend, with the hashing embedder."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


@pytest.fixture
def index(memory_store: BaseMemoryStore) -> VectorStoreIndex:
    """A VectorStoreIndex over the three documents, embedding with the store's embedder."""
    assert memory_store.embedder is not None
    vs = MemfoldVectorStore(memory_store, namespace=NS)
    return VectorStoreIndex.from_documents(
        DOCS,
        storage_context=StorageContext.from_defaults(vector_store=vs),
        embed_model=MemfoldEmbedding(memory_store.embedder),
    )


def _tea_or_coffee(n_at_least: int) -> MetadataFilters:
    return MetadataFilters(
        filters=[
            MetadataFilter(key="kind", value=["tea", "coffee"], operator=FilterOperator.IN),
            MetadataFilter(key="n", value=n_at_least, operator=FilterOperator.GTE),
        ],
        condition=FilterCondition.AND,
    )


def test_index_retrieves_by_meaning_with_text_and_metadata(index: VectorStoreIndex) -> None:
    """The retriever returns the closest document's text, metadata and source document."""
    hits = index.as_retriever(similarity_top_k=1).retrieve("green tea brewing degrees")
    assert [h.node.ref_doc_id for h in hits] == ["tea"]
    assert hits[0].node.get_content() == "Green tea is brewed at 80 degrees"
    assert hits[0].node.metadata == {"kind": "tea", "n": 1}
    assert hits[0].score is not None


async def test_filters_run_in_the_store_sync_and_async(index: VectorStoreIndex) -> None:
    """Nested filters narrow the candidates before ranking, and k results come back."""
    retriever = index.as_retriever(similarity_top_k=2, filters=_tea_or_coffee(2))
    assert sorted(h.node.ref_doc_id or "" for h in retriever.retrieve("tea")) == [
        "coffee",
        "oolong",
    ]
    hits = await retriever.aretrieve("tea")
    assert sorted(h.node.ref_doc_id or "" for h in hits) == ["coffee", "oolong"]
    either = MetadataFilters(
        filters=[MetadataFilter(key="n", value=1), MetadataFilter(key="n", value=3)],
        condition=FilterCondition.OR,
    )
    assert len(index.as_retriever(similarity_top_k=5, filters=either).retrieve("tea")) == 2


async def test_query_modes(memory_store: BaseMemoryStore) -> None:
    """Text search ranks by words alone, hybrid by both; unsupported modes and operators say so."""
    vs = MemfoldVectorStore(memory_store, namespace=NS)
    await vs.async_add(
        [TextNode(id_="a", text="espresso crema"), TextNode(id_="b", text="tea leaves")]
    )
    text = VectorStoreQuery(
        query_str="tea", mode=VectorStoreQueryMode.TEXT_SEARCH, similarity_top_k=2
    )
    assert (await vs.aquery(text)).ids == ["b"]
    assert memory_store.embedder is not None
    vector = memory_store.embedder.embed(["espresso"], kind="query")[0]
    hybrid = VectorStoreQuery(
        query_str="espresso", query_embedding=vector, mode=VectorStoreQueryMode.HYBRID, alpha=0.5
    )
    assert vs.query(hybrid).ids == ["a"]
    with pytest.raises(UnsupportedOperation, match="mode"):
        vs.query(VectorStoreQuery(query_embedding=vector, mode=VectorStoreQueryMode.SVM))
    bad = MetadataFilters(
        filters=[MetadataFilter(key="k", value="x", operator=FilterOperator.TEXT_MATCH)]
    )
    with pytest.raises(UnsupportedOperation, match="text_match"):
        vs.query(VectorStoreQuery(query_embedding=vector, filters=bad))


async def test_delete_by_document_nodes_and_clear(index: VectorStoreIndex) -> None:
    """delete removes a source document's nodes; delete_nodes and clear remove the rest."""
    vs = index.vector_store
    assert isinstance(vs, MemfoldVectorStore)
    await vs.adelete("tea")
    left = await vs.aget_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="kind", value="tea")])
    )
    assert [n.ref_doc_id for n in left] == ["oolong"]
    vs.delete_nodes([left[0].node_id])
    assert [n.ref_doc_id for n in vs.get_nodes(filters=MetadataFilters(filters=[]))] == ["coffee"]
    await vs.aclear()
    assert vs.get_nodes(filters=MetadataFilters(filters=[])) == []


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_is_empty_matches_what_llama_index_deletes(
    memory_store: BaseMemoryStore, use_async: bool
) -> None:
    """``IS_EMPTY`` selects nodes whose field is missing, null, "" or [], as LlamaIndex's own
    SimpleVectorStore does (it once selected only missing ones, then left [] out, so
    delete_nodes left those behind)."""
    tags = {
        "missing": {}, "null": {"tag": None}, "blank": {"tag": ""}, "nothing": {"tag": []},
        "list": {"tag": ["x"]}, "set": {"tag": "x"}, "zero": {"tag": 0},
    }  # fmt: skip
    is_empty = MetadataFilter(key="tag", value=None, operator=FilterOperator.IS_EMPTY)
    empty = MetadataFilters(filters=[is_empty])
    reference = SimpleVectorStore()
    reference.add([TextNode(id_=k, text="", metadata=m, embedding=[1.0]) for k, m in tags.items()])
    reference.delete_nodes(filters=empty)
    kept = sorted(reference.data.embedding_dict)
    assert kept == ["list", "set", "zero"]
    deleted = sorted(set(tags) - set(kept))
    vs = MemfoldVectorStore(memory_store, namespace=NS)
    nodes = [TextNode(id_=k, text=f"note {k}", metadata=m) for k, m in tags.items()]
    everything = MetadataFilters(filters=[])
    if use_async:
        await vs.async_add(nodes)
        assert sorted(n.node_id for n in await vs.aget_nodes(filters=empty)) == deleted
        await vs.adelete_nodes(filters=empty)
        assert sorted(n.node_id for n in await vs.aget_nodes(filters=everything)) == kept
    else:
        vs.add(nodes)
        assert sorted(n.node_id for n in vs.get_nodes(filters=empty)) == deleted
        vs.delete_nodes(filters=empty)
        assert sorted(n.node_id for n in vs.get_nodes(filters=everything)) == kept


async def test_vector_memory_block_recalls_flushed_messages(memory_store: BaseMemoryStore) -> None:
    """LlamaIndex's VectorMemoryBlock stores flushed turns here and finds them for a session."""
    assert memory_store.embedder is not None
    block = VectorMemoryBlock(
        vector_store=MemfoldVectorStore(memory_store, namespace=("acme", "chat")),
        embed_model=MemfoldEmbedding(memory_store.embedder),
        similarity_top_k=1,
    )
    memory = Memory.from_defaults(
        session_id="s1", token_limit=60, chat_history_token_ratio=0.5, token_flush_size=10,
        memory_blocks=[block],
    )  # fmt: skip
    await memory.aput_messages([
        ChatMessage(role="user", content="My favourite tea is a smoky lapsang souchong."),
        ChatMessage(role="assistant", content="Noted: lapsang souchong, smoky."),
        ChatMessage(role="user", content="Also, I work on the billing service at Acme."),
        ChatMessage(role="assistant", content="Understood, billing at Acme."),
        ChatMessage(role="user", content="Which tea do I like?"),
    ])  # fmt: skip
    messages = await memory.aget()
    assert "lapsang souchong" in str(messages[0].content)
    assert memory_store.count(("acme", "chat")) >= 1


async def test_a_filter_key_with_a_dot_is_refused(memory_store: BaseMemoryStore) -> None:
    """A metadata key holding a '.' cannot be filtered on (memfold reads it as a nested path):
    UnsupportedOperation, not an empty result, and nothing is deleted."""
    vs = MemfoldVectorStore(memory_store, namespace=NS)
    await vs.async_add([TextNode(id_="doc", text="a report", metadata={"file.ext": "pdf"})])
    dotted = MetadataFilters(filters=[MetadataFilter(key="file.ext", value="pdf")])
    with pytest.raises(UnsupportedOperation, match=r"file\.ext"):
        vs.get_nodes(filters=dotted)
    with pytest.raises(UnsupportedOperation, match=r"file\.ext"):
        await vs.adelete_nodes(filters=dotted)
    assert [n.node_id for n in vs.get_nodes(filters=MetadataFilters(filters=[]))] == ["doc"]
