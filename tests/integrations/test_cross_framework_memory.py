"""One long-term memory, three frameworks: what LangChain writes, LlamaIndex and LangGraph find,
and the LlamaIndex memory block carries memories from one session into the next."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery

from memfold.errors import BackendUnavailable
from memfold.integrations.langchain import MemfoldKVStore
from memfold.integrations.langchain import MemfoldVectorStore as LangChainVectorStore
from memfold.integrations.langgraph import MemfoldStore
from memfold.integrations.llama_index import MemfoldMemoryBlock
from memfold.integrations.llama_index import MemfoldVectorStore as LlamaIndexVectorStore
from memfold.limits import Limits
from memfold.memories import BaseMemoryStore
from memfold.redaction import Redactor
from tests.support import MEMORY_BACKENDS, drop_checkpoint_store, make_memory_store


@pytest.fixture(params=MEMORY_BACKENDS)
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A fresh memory store of each backend, with the hashing embedder."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


async def test_written_in_langchain_found_in_llama_index_and_langgraph(
    memory_store: BaseMemoryStore,
) -> None:
    """A document added through LangChain is found by LlamaIndex and LangGraph searches."""
    lc = LangChainVectorStore(memory_store, namespace=("acme", "u1", "notes"))
    await lc.aadd_documents(
        [
            Document("Prefers window seats on long flights", metadata={"topic": "travel"}),
            Document("Allergic to peanuts", metadata={"topic": "health"}),
        ],
        ids=["seat", "peanuts"],
    )
    li = LlamaIndexVectorStore(memory_store, namespace=("acme", "u1", "notes"))
    query = VectorStoreQuery(
        query_str="window seat on a flight", similarity_top_k=1, mode="text_search",  # type: ignore[arg-type]
        filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="travel")]),
    )  # fmt: skip
    result = await li.aquery(query)
    assert result.ids == ["seat"]
    assert result.nodes is not None
    assert result.nodes[0].get_content() == "Prefers window seats on long flights"
    lg = MemfoldStore(memory_store, index={"fields": ["topic"]}, tenant="acme")
    found = lg.search(("u1",), query="window seats flights", filter={"topic": "health"})
    assert [(i.namespace, i.key, i.value) for i in found] == [
        (("u1", "notes"), "peanuts", {"topic": "health"})
    ]


async def test_memory_block_carries_memories_across_sessions(
    memory_store: BaseMemoryStore,
) -> None:
    """Turns flushed from session one are recalled, by the block, in session two."""

    def memory(session: str) -> Memory:
        block = MemfoldMemoryBlock(memory_store, namespace=("acme", "u1"), similarity_top_k=2)
        return Memory.from_defaults(
            session_id=session, token_limit=50, chat_history_token_ratio=0.5,
            token_flush_size=10, memory_blocks=[block],
        )  # fmt: skip

    first = memory("s1")
    await first.aput_messages(
        [
            ChatMessage(role="user", content="I keep bees on my roof in Lisbon."),
            ChatMessage(role="assistant", content="Rooftop bees in Lisbon, lovely."),
            ChatMessage(role="user", content="Also, my daughter is called Inês."),
            ChatMessage(role="assistant", content="Noted, Inês."),
            ChatMessage(role="user", content="Thanks!"),
        ]
    )
    assert memory_store.count(("acme", "u1")) >= 2
    second = memory("s2")
    await second.aput(ChatMessage(role="user", content="Where do I keep my bees?"))
    messages = await second.aget()
    assert "user: I keep bees on my roof in Lisbon." in str(messages[0].content)
    assert len(messages) == 2  # the memory system message and session two's own turn


async def test_memory_block_keeps_messages_the_store_could_not_hold_as_they_are(
    memory_store: BaseMemoryStore,
) -> None:
    """A flushed message with a NUL, or over the store's text limit, reaches long-term memory
    cleaned and cut, with the rest of its batch, and a read with such a message is answered
    (the block failed both, losing what Memory had already flushed; found by a differential
    test of the memory blocks)."""
    memory_store.limits = Limits(max_memory_text_bytes=64)
    block = MemfoldMemoryBlock(memory_store, namespace=("acme", "u1"))
    await block.aput([
        ChatMessage(role="user", content="my cat is called Tom\x00"),
        ChatMessage(role="assistant", content="Tom the cat! " + "meow " * 40),
        ChatMessage(role="user", content="he is grey"),
    ])  # fmt: skip
    texts = sorted(r.text for r in memory_store.list_records(("acme", "u1")))
    assert texts[0] == ("assistant: Tom the cat! " + "meow " * 40)[:64]
    assert texts[1:] == ["user: he is grey", "user: my cat is called Tom "]
    assert all(len(t.encode()) <= 64 for t in texts)
    found = await block.aget([ChatMessage(role="user", content="Tom\x00 " + "cat " * 100)])
    assert "my cat is called Tom" in found
    assert "my cat is called Tom" in block.get([ChatMessage(role="user", content="cat\x00")])


def test_default_namespaces_need_a_tenant_where_one_is_required() -> None:
    """Vector and key-value stores built without a namespace use the default tenant's, unless
    the memory store requires tenants: then they must be given a namespace."""
    from memfold import InvalidInput
    from memfold.integrations.langchain import MemfoldKVStore
    from memfold.memories import open_memory_store

    plain = open_memory_store("memory://?dimensions=4")
    assert LangChainVectorStore(plain).namespace == ("default", "documents")
    assert MemfoldKVStore(plain).namespace == ("default", "kv")
    assert LlamaIndexVectorStore(plain).namespace == ("default", "nodes")
    strict = open_memory_store("memory://?dimensions=4&require_tenant=true")
    for build in (LangChainVectorStore, MemfoldKVStore, LlamaIndexVectorStore):
        with pytest.raises(InvalidInput, match="require_tenant"):
            build(strict)
    kv = MemfoldKVStore(strict, namespace=("acme", "kv"))
    kv.mset([("k", b"v")])
    assert strict.count(("acme",)) == 1


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql", "chroma", "redis"])
@pytest.mark.parametrize("use_async", [False, True])
async def test_byte_store_bytes_survive_a_redacting_store(
    backend: str, use_async: bool, tmp_path: Path
) -> None:
    """Bytes whose base64 reads as an AWS key id or a phone number come back exactly from a
    byte store over a store that redacts (the redactor rewrote them, and mget then raised a
    raw binascii.Error); an entry holding no valid base64 raises BackendUnavailable."""
    samples = {
        "aws": base64.b64decode("AKIAABCDEFGHIJKLMNOP"),
        "phone": base64.b64decode("call+14155550100xxx="),
        "plain": b"\x00\x01hello",
    }
    store = make_memory_store(backend, tmp_path, redactor=Redactor())
    kv = MemfoldKVStore(store, namespace=("acme", "kv"))

    async def mget(keys: list[str]) -> list[bytes | None]:
        return await kv.amget(keys) if use_async else kv.mget(keys)

    if use_async:
        await kv.amset(list(samples.items()))
    else:
        kv.mset(list(samples.items()))
    assert await mget(list(samples)) == list(samples.values())
    store.put(("acme", "kv"), "", {"b64": "not base64!"}, id="damaged")
    store.put(("acme", "kv"), "a memory, not bytes", id="note")
    for key in ("damaged", "note"):
        with pytest.raises(BackendUnavailable, match=f"key {key!r}"):
            await mget([key])
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]


def test_an_empty_key_is_refused_where_a_key_names_the_item(memory_store: BaseMemoryStore) -> None:
    """The byte store's ``mset`` and the LangGraph store's ``put`` refuse the key ``""`` (as
    their reads and deletes do): it once stored the value under a fresh random id instead."""
    from memfold import InvalidInput
    from memfold.integrations.langchain import MemfoldKVStore

    kv, lg = MemfoldKVStore(memory_store), MemfoldStore(memory_store)
    with pytest.raises(InvalidInput, match="a key must not be empty"):
        kv.mset([("fine", b"1"), ("", b"2")])
    with pytest.raises(InvalidInput, match="key must not be empty"):
        lg.put(("users",), "", {"v": 1})
    assert list(kv.yield_keys()) == []
    assert lg.search(("users",)) == []
