"""Hostile input to the LlamaIndex adapter's memory entry points (the compaction memory, the
memory block, the tool spec and the vector store), on memory and SQLite stores, sync and async:
each call returns (and what it stores reads back exactly) or raises a `memfold.errors` error,
and canary data written before is unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from llama_index.core.llms import ChatMessage
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from memfold import InvalidInput, MemfoldError
from memfold.compaction import ApproximateCounter, RunningSummary
from memfold.integrations.llama_index import (
    MemfoldChatStore,
    MemfoldCompactionMemory,
    MemfoldMemoryBlock,
    MemfoldToolSpec,
    MemfoldVectorStore,
)
from memfold.memories import BaseMemoryStore
from memfold.stores import DEFAULT_TENANT, BaseThreadStore
from tests.reliability.fuzzing import (
    FUZZ,
    hostile_ids,
    hostile_text,
    json_scalars,
    json_values,
    nested,
    numbers,
    vectors,
)
from tests.reliability.test_fuzz_llama_index import _same, li_messages
from tests.reliability.test_fuzz_memories import Canary, namespaces
from tests.reliability.test_fuzz_threads import Canary as ThreadCanary
from tests.support import (
    MEMORY_DIMS,
    Api,
)

NUMBERS = numbers(-3, 30)
BATCHES = st.lists(li_messages(), max_size=3) | st.sampled_from([None, "hi", [None], [1]])


def _stored_texts(messages: list[ChatMessage]) -> list[Any]:
    """What `MemfoldMemoryBlock` keeps of ``messages``: user and assistant ones with text."""
    return [
        f"{m.role.value}: {m.content}"
        for m in messages
        if m.role.value in ("user", "assistant") and m.content
    ]


@FUZZ
@given(
    op=st.sampled_from(["put_messages", "get", "from_defaults"]),
    key=hostile_ids(),
    tenant=st.none() | hostile_ids(),
    batch=BATCHES,
    max_tokens=st.sampled_from([200, 1_000]) | NUMBERS,
)
async def test_compaction_memory_answers_or_refuses(
    tstore: BaseThreadStore,
    use_async: bool,
    op: str,
    key: Any,
    tenant: Any,
    batch: Any,
    max_tokens: Any,
) -> None:
    """`MemfoldCompactionMemory` (built directly or by ``from_defaults`` with a hostile
    ``chat_history``) on hostile keys, tenants and budgets, and ``put_messages`` and ``get``
    (and ``aput_messages``, ``aget``): what is put reads back exactly through ``get_all``,
    ``get`` answers a list of messages, every call answers or raises a memfold error, and
    the canary threads are unchanged."""
    canary = ThreadCanary(Api(tstore, use_async))
    await canary.seed()
    try:
        chat = MemfoldChatStore(tstore, tenant=tenant)
        strategy = RunningSummary(max_tokens, counter=ApproximateCounter())
        if op == "from_defaults":
            memory = MemfoldCompactionMemory.from_defaults(
                chat_history=batch, chat_store=chat, strategy=strategy, chat_store_key=key
            )
            if batch is not None:  # None: the thread is left as it was
                got = memory.get_all()
                assert len(got) == len(batch)
                assert all(_same(r, w) for r, w in zip(got, batch, strict=True))
        else:
            memory = MemfoldCompactionMemory(chat, strategy, chat_store_key=key)
        if op == "put_messages":
            before = len(memory.get_all())
            if use_async:
                await memory.aput_messages(batch)
            else:
                memory.put_messages(batch)
            got = memory.get_all()
            assert len(got) == before + len(batch)
            assert all(_same(r, w) for r, w in zip(got[before:], batch, strict=True))
        view = await memory.aget() if use_async else memory.get()
        assert all(isinstance(m, ChatMessage) for m in view)
    except MemfoldError:
        pass
    await canary.check()


@FUZZ
@given(
    namespace=namespaces(),
    top_k=st.integers(1, 5) | NUMBERS,
    batch=BATCHES,
    query=BATCHES,
)
async def test_memory_block_answers_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    namespace: Any,
    top_k: Any,
    batch: Any,
    query: Any,
) -> None:
    """`MemfoldMemoryBlock` built on hostile namespaces and ``similarity_top_k``, ``put``
    (``aput``) of hostile messages and ``get`` (``aget``) with hostile ones: each kept message
    is stored with its text exactly, ``get`` answers a string, every call answers or raises a
    memfold error, and the canary records are unchanged."""
    try:
        block = MemfoldMemoryBlock(mstore, namespace=namespace, similarity_top_k=top_k)
        before = mstore.count(block.namespace)
        if use_async:
            await block.aput(batch)
        else:
            block.put(batch)
        stored = mstore.list_records(block.namespace, limit=100)
        assert len(stored) == before + len(_stored_texts(batch or []))  # no dedupe
        assert set(_stored_texts(batch or [])) <= {r.text for r in stored}
        answer = await block.aget(query) if use_async else block.get(query)
        assert isinstance(answer, str)
    except MemfoldError:
        pass
    canary.check()


@FUZZ
@given(
    namespace=namespaces(),
    op=st.sampled_from(["remember", "recall", "update_memory", "forget"]),
    text=hostile_text() | hostile_ids(),
    limit=NUMBERS,
)
async def test_tool_spec_answers_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    namespace: Any,
    op: str,
    text: Any,
    limit: Any,
) -> None:
    """`MemfoldToolSpec` built on hostile namespaces, and its ``remember``, ``recall``,
    ``update_memory`` and ``forget`` tools (and their ``a`` twins) with hostile text, ids and
    limits: a remembered or updated text is stored exactly, every tool answers a string or
    raises a memfold error, and the canary records are unchanged."""
    try:
        spec = MemfoldToolSpec(mstore, namespace)
        known = spec.remember("Likes green tea").removeprefix("Remembered (id: ")[:-2]
        args = {
            "remember": (text,),
            "recall": (text, limit),
            "update_memory": (known, text),
            "forget": (text,),
        }[op]
        method = getattr(spec, ("a" if use_async else "") + op)
        answer = await method(*args) if use_async else method(*args)
        assert isinstance(answer, str)
        if op == "remember":
            stored_id = answer.removeprefix("Remembered (id: ").removesuffix(").")
            got = mstore.get(spec.namespace, stored_id)
            assert got is not None
            assert got.text == text
        elif op == "update_memory":
            got = mstore.get(spec.namespace, known)
            assert got is not None
            assert got.text == text
    except MemfoldError:
        pass
    canary.check()


@st.composite
def nodes(draw: st.DrawFn) -> TextNode:
    """LlamaIndex text nodes with hostile ids, text, metadata and embeddings (those LlamaIndex
    accepts)."""
    try:
        return TextNode(
            id_=draw(hostile_text(max_size=12)),
            text=draw(hostile_text(max_size=40)),
            metadata=draw(st.dictionaries(hostile_text(max_size=8), json_values(max_leaves=4),
                                          max_size=3)),
            embedding=draw(st.none() | vectors(MEMORY_DIMS)),
        )  # fmt: skip
    except Exception:  # LlamaIndex refuses it before a store sees it
        reject()


@st.composite
def metadata_filters(draw: st.DrawFn) -> MetadataFilters:
    """LlamaIndex metadata filters of hostile keys, values, operators and conditions."""
    leaf = st.builds(
        MetadataFilter,
        key=st.sampled_from(["n", "kind", "ref_doc_id"]) | hostile_text(max_size=8),
        value=json_scalars() | st.lists(json_scalars(), max_size=3),
        operator=st.sampled_from(list(FilterOperator)),
    )
    try:
        return MetadataFilters(
            filters=draw(st.lists(leaf, max_size=3)),
            condition=draw(st.sampled_from(list(FilterCondition))),
        )
    except Exception:  # LlamaIndex refuses it before a store sees it
        reject()


@FUZZ
@given(
    namespace=st.none() | namespaces(),
    batch=st.lists(nodes(), max_size=3) | st.sampled_from([None, "hi", [None], [1]]),
)
async def test_vector_store_adds_exactly_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    namespace: Any,
    batch: Any,
) -> None:
    """`MemfoldVectorStore` built on hostile namespaces, and ``add`` (``async_add``) of nodes
    with hostile ids, text, metadata and embeddings: ``get_nodes`` reads each back exactly, or
    a memfold error is raised and nothing was added; the canary records are unchanged."""
    try:
        vs = MemfoldVectorStore(mstore, namespace=namespace)
        before = mstore.count(vs.namespace)
        try:
            added = await vs.async_add(batch) if use_async else vs.add(batch)
        except MemfoldError:
            assert mstore.count(vs.namespace) == before
        else:
            latest = {i: n for i, n in zip(added, batch, strict=True)}
            got = {n.node_id: n for n in vs.get_nodes(list(latest))}
            for i, node in latest.items():
                assert (got[i].get_content(), got[i].metadata) == (node.text, node.metadata)
    except MemfoldError:
        pass
    canary.check()


@FUZZ
@given(
    op=st.sampled_from(["query", "delete", "delete_nodes", "get_nodes"]),
    vector=st.none() | vectors(MEMORY_DIMS),
    text=st.none() | hostile_text() | hostile_ids(),
    top_k=NUMBERS,
    mode=st.sampled_from(list(VectorStoreQueryMode)),
    alpha=st.none() | NUMBERS,
    filters=st.none() | metadata_filters(),
    ids=st.none() | st.lists(hostile_ids(), max_size=3) | hostile_ids(),
)  # fmt: skip
async def test_vector_store_reads_and_deletes_answer_or_refuse(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    op: str,
    vector: Any,
    text: Any,
    top_k: Any,
    mode: VectorStoreQueryMode,
    alpha: Any,
    filters: Any,
    ids: Any,
) -> None:
    """``query`` (hostile embeddings, query strings, ``similarity_top_k``, modes, ``alpha``,
    filters and doc ids), ``delete`` (hostile ``ref_doc_id``), ``delete_nodes`` and
    ``get_nodes`` (hostile ids and filters), sync and async, answer at most
    ``similarity_top_k`` nodes or raise a memfold error, and never touch records outside the
    vector store's namespace."""
    vs = MemfoldVectorStore(mstore, namespace=("fuzz", "nodes"))
    vs.add([TextNode(id_=f"n{i}", text=t, metadata={"n": i}) for i, t in
            enumerate(["green tea", "black coffee", "green tea and lemon"])])  # fmt: skip
    prefix = "a" if use_async else ""
    try:
        if op == "query":
            try:
                query = VectorStoreQuery(
                    query_embedding=vector, similarity_top_k=top_k, query_str=text, mode=mode,
                    alpha=alpha, filters=filters, doc_ids=ids,
                )  # fmt: skip
            except Exception:  # LlamaIndex refuses it before a store sees it
                reject()
            found = getattr(vs, prefix + "query")(query)
            found = await found if use_async else found
            assert len(found.ids) <= top_k
        elif op == "delete":
            done = getattr(vs, prefix + "delete")(text)
            await done if use_async else None
        else:
            kwargs = {"node_ids": ids} if ids is not None else {"filters": filters}
            done = getattr(vs, prefix + op)(**kwargs)
            done = await done if use_async else done
            if op == "get_nodes":
                assert all(isinstance(n, TextNode) for n in done)
    except MemfoldError:
        pass
    canary.check()


def _memory(t: BaseThreadStore, **kwargs: Any) -> MemfoldCompactionMemory:
    return MemfoldCompactionMemory(
        MemfoldChatStore(t), RunningSummary(200, counter=ApproximateCounter()), **kwargs
    )


def _node(metadata: Any) -> TextNode:
    return TextNode(id_="n", text="x", metadata=metadata)


USER = ChatMessage(role="user", content="tea")

REGRESSIONS: list[tuple[str, Any]] = [
    ("put_messages of None", lambda m, t: _memory(t).put_messages(None)),
    ("a chat_store_key that is None", lambda m, t: _memory(t, chat_store_key=None)),
    ("a block's similarity_top_k of None",
     lambda m, t: MemfoldMemoryBlock(m, namespace=("a",), similarity_top_k=None)),
    ("a block's similarity_top_k of 0",
     lambda m, t: MemfoldMemoryBlock(m, namespace=("a",), similarity_top_k=0)),
    ("a block's namespace holding None",
     lambda m, t: MemfoldMemoryBlock(m, namespace=("a", None))),
    ("a block's put of a str", lambda m, t: MemfoldMemoryBlock(m, namespace=("a",)).put("hi")),
    ("a block's get of strs", lambda m, t: MemfoldMemoryBlock(m, namespace=("a",)).get(["hi"])),
    ("a tool spec's namespace of None", lambda m, t: MemfoldToolSpec(m, None)),
    ("a vector store's namespace holding None",
     lambda m, t: MemfoldVectorStore(m, namespace=("a", None))),
    ("add of None", lambda m, t: MemfoldVectorStore(m).add(None)),
    ("add of a str", lambda m, t: MemfoldVectorStore(m).add("hi")),
    ("add of a non-node", lambda m, t: MemfoldVectorStore(m).add([USER])),
    ("add of a node with a set in its metadata",
     lambda m, t: MemfoldVectorStore(m).add([_node({"k": {1, 2}})])),
    ("query with doc_ids that are not a list",
     lambda m, t: MemfoldVectorStore(m).query(VectorStoreQuery(doc_ids=True))),  # type: ignore[arg-type]
    ("a hybrid query with a str alpha",
     lambda m, t: MemfoldVectorStore(m).query(VectorStoreQuery(
         query_embedding=[1.0] * MEMORY_DIMS, mode=VectorStoreQueryMode.HYBRID, alpha="3"))),  # type: ignore[arg-type]
    ("delete_nodes by a filter on an int past 64 bits",
     lambda m, t: MemfoldVectorStore(m).delete_nodes(
         filters=MetadataFilters(filters=[MetadataFilter(key="n", value=2**63)]))),
    ("add of a node with deeply nested metadata",
     lambda m, t: MemfoldVectorStore(m).add([_node({"k": nested(3_000)})])),
]  # fmt: skip
"""Calls that raised a builtin or pydantic error (or stored a set as a list) before the fuzz
suite found them."""


@pytest.mark.parametrize(("case", "call"), REGRESSIONS, ids=[c for c, _ in REGRESSIONS])
async def test_found_bugs_raise_invalid_input(
    mstore: BaseMemoryStore, canary: Canary, tstore: BaseThreadStore, case: str, call: Any
) -> None:
    """Each input the fuzzing found crashing the adapter now raises `InvalidInput`, nothing is
    stored, and the canary records and threads are unchanged."""
    threads = ThreadCanary(Api(tstore, False))
    await threads.seed()
    before = mstore.list_records(("a",)) + mstore.list_records((DEFAULT_TENANT,))
    with pytest.raises(InvalidInput):
        call(mstore, tstore)
    assert mstore.list_records(("a",)) + mstore.list_records((DEFAULT_TENANT,)) == before
    canary.check()
    await threads.check()


async def test_node_with_empty_id_reads_back_under_its_stored_id(
    mstore: BaseMemoryStore, use_async: bool
) -> None:
    """A node added with an empty id gets one from the store, and reads back under it (it read
    back with the empty id, so ``get_nodes`` of the returned id found a node it did not ask
    for)."""
    vs = MemfoldVectorStore(mstore)
    node = TextNode(id_="", text="green tea", metadata={"n": 1})
    (added,) = await vs.async_add([node]) if use_async else vs.add([node])
    (got,) = await vs.aget_nodes([added]) if use_async else vs.get_nodes([added])
    assert (got.node_id, got.get_content(), got.metadata) == (added, "green tea", {"n": 1})
    assert added
