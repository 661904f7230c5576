"""Hostile input to every LangChain adapter entry point, on memory and SQLite stores, sync and
async: each call returns (and what it stores reads back exactly) or raises a `memfold.errors`
error, and canary data written before is unchanged."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from langchain.agents.middleware import ModelRequest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool, tool
from pydantic import ValidationError

from memfold import InvalidInput, MemfoldError, Message, ToolCall
from memfold.compaction import ApproximateCounter, RunningSummary, SummarizeRequest
from memfold.integrations.langchain import (
    ChatModelSummarizer,
    EmbeddingsEmbedder,
    ForgetTool,
    JournaledTool,
    MemfoldChatMessageHistory,
    MemfoldCompactionMiddleware,
    MemfoldEmbeddings,
    MemfoldKVStore,
    MemfoldVectorStore,
    RecallTool,
    RememberTool,
    UpdateTool,
    acompact_messages,
    compact_messages,
    journaled,
    memory_tools,
    to_langchain,
    to_memfold,
)
from memfold.journal import EffectJournal, open_journal
from memfold.memories import BaseMemoryStore
from memfold.recall.embedders import HashingEmbedder, check_embed_args
from memfold.stores import BaseThreadStore
from tests.reliability.fuzzing import (
    FUZZ,
    FUZZ_SLOW,
    as_json,
    embeds_or_refuses,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    json_values,
    messages,
    nested,
    numbers,
    vectors,
)
from tests.reliability.test_fuzz_memories import Canary, filters, namespaces
from tests.reliability.test_fuzz_threads import Canary as ThreadCanary
from tests.support import MEMORY_DIMS, Api

NUMBERS = numbers(-3, 30)


async def _run(use_async: bool, sync: Any, coroutine: Any) -> Any:
    """``await coroutine()`` when ``use_async``, else ``sync()``."""
    return await coroutine() if use_async else sync()


JSON_OBJECTS = st.dictionaries(hostile_text(max_size=8), json_values(max_leaves=4), max_size=3)
"""Mappings of hostile keys and values, where LangChain takes a dict."""

# -- LangChain messages -------------------------------------------------------------------------


def _blocks() -> st.SearchStrategy[Any]:
    """Content blocks: hostile dicts (with and without a str ``type``) and bare strings."""
    block = st.fixed_dictionaries(
        {"type": hostile_text(max_size=8) | hostile_keys()},
        optional={
            "text": hostile_text() | json_values(max_leaves=2),
            "url": hostile_text(),
            "base64": hostile_text(),
            "mime_type": hostile_text(max_size=8),
            "extra": json_values(max_leaves=3),
        },
    )
    return st.lists(block | hostile_text(), max_size=3)


@st.composite
def lc_messages(draw: st.DrawFn) -> BaseMessage:
    """LangChain messages of every kind with hostile fields (those LangChain itself accepts)."""
    kind = draw(
        st.sampled_from(["memfold", "human", "ai", "chunk", "system", "tool", "chat", "function",
                         "remove"])
    )  # fmt: skip
    common: dict[str, Any] = {
        "content": draw(hostile_text(max_size=40) | _blocks()),
        "id": draw(st.none() | hostile_text(max_size=12)),
        "name": draw(st.none() | hostile_text(max_size=8)),
        "additional_kwargs": draw(JSON_OBJECTS),
        "response_metadata": draw(JSON_OBJECTS),
    }
    call = st.fixed_dictionaries(
        {
            "name": hostile_text(max_size=8),
            "args": st.dictionaries(hostile_text(max_size=6), json_values(max_leaves=3)),
            "id": st.none() | hostile_text(max_size=8),
        }
    )
    try:
        match kind:
            case "memfold":
                return to_langchain(draw(messages()))
            case "human":
                return HumanMessage(**common)
            case "ai" | "chunk":
                made = AIMessage(**common, tool_calls=draw(st.lists(call, max_size=2)))
                return (
                    AIMessageChunk(**made.model_dump(exclude={"type"})) if kind == "chunk" else made
                )
            case "system":
                return SystemMessage(**common)
            case "tool":
                return ToolMessage(
                    **common,
                    tool_call_id=draw(hostile_text(max_size=8)),
                    status=draw(st.sampled_from(["success", "error"])),
                    artifact=draw(st.none() | json_values(max_leaves=4)),
                )
            case "chat":
                return ChatMessage(**common, role=draw(hostile_text(max_size=8)))
            case "function":
                return FunctionMessage(**(common | {"name": draw(hostile_text(max_size=8))}))
        return RemoveMessage(id=draw(hostile_text(max_size=8)))
    except Exception:  # LangChain refuses it (or fails on it) before memfold sees it
        reject()


def _same(read: BaseMessage, written: BaseMessage) -> bool:
    """Whether a message read back is the one written (a chunk reads back as its message, and
    a message written without an id (None or "") or time reads back with those the store
    gave it)."""
    sent = as_json(to_memfold(written).to_dict())
    if sent.get("id") == "":
        del sent["id"]
    stored = {k: v for k, v in to_memfold(read).to_dict().items() if k in sent}
    kind = type(written).__name__.removesuffix("Chunk")
    return stored == sent and type(read).__name__ == kind


@FUZZ
@given(
    thread_id=hostile_ids(),
    tenant=st.none() | hostile_ids(),
    batch=st.lists(lc_messages(), max_size=3),
)
async def test_chat_history_stores_exactly_or_refuses(
    tstore: BaseThreadStore, use_async: bool, thread_id: Any, tenant: Any, batch: Any
) -> None:
    """`MemfoldChatMessageHistory.add_messages` (and ``aadd_messages``) with hostile thread
    ids, tenants and LangChain messages stores them so ``messages`` reads them back exactly
    (`to_memfold` then `to_langchain` loses nothing), or raises a memfold error and stores
    nothing; the canary threads are unchanged."""
    canary = ThreadCanary(Api(tstore, use_async))
    await canary.seed()
    try:
        history = MemfoldChatMessageHistory(tstore, thread_id, tenant=tenant)
        before = await _run(use_async, lambda: history.messages, history.aget_messages)
    except MemfoldError:
        await canary.check()
        return
    try:
        await _run(
            use_async,
            lambda: history.add_messages(batch),
            lambda: history.aadd_messages(batch),
        )
    except MemfoldError:
        assert await _run(use_async, lambda: history.messages, history.aget_messages) == before
    else:
        after = await _run(use_async, lambda: history.messages, history.aget_messages)
        assert after[: len(before)] == before
        added = after[len(before) :]
        assert len(added) == len(batch)
        assert all(_same(r, w) for r, w in zip(added, batch, strict=True))
    await canary.check()


@FUZZ
@given(
    message=messages() | st.sampled_from([None, "hi", {"role": "user"}, 1]),
    host=lc_messages() | st.sampled_from([None, "hi", {"type": "human"}, 1]),
)
def test_converters_round_trip_or_refuse(message: Any, host: Any) -> None:
    """`to_memfold` then `to_langchain` gives back the LangChain message, and `to_langchain`
    of any memfold message gives one `to_memfold` takes; a value that is not a message, or one
    nested too deeply to copy, raises `InvalidInput`."""
    try:
        assert isinstance(to_memfold(to_langchain(message)), Message)
    except InvalidInput:
        assert not isinstance(message, Message) or _depth(message.to_dict()) > 64
    try:
        again = to_langchain(to_memfold(host))
    except InvalidInput:
        assert (
            not isinstance(host, BaseMessage)
            or isinstance(host, RemoveMessage)
            or (_depth(host.model_dump()) > 64)
        )
    else:
        if _plain_json(host.model_dump()):
            assert _same(again, host)


def _plain_json(value: Any) -> bool:
    """Whether ``value`` is JSON that compares equal to a copy of itself (no NaN, no objects
    without equality, nothing nested too deeply to compare)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return _depth(value) < SHALLOW


SHALLOW = 200
"""Values nested less deeply than this are compared (the comparison itself recurses)."""


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [c for v in level if isinstance(v, list | dict | tuple)
                 for c in (v.values() if isinstance(v, dict) else v)]  # fmt: skip
    return depth


# -- KV store -----------------------------------------------------------------------------------

BYTES = st.binary(max_size=64) | st.sampled_from([b"", b"\x00" * 10, bytes(range(256))])
NOT_BYTES = st.sampled_from(["text", 1, None, 1.5, ["b"], bytearray(b"x"), {"b": 1}])


@FUZZ
@given(
    namespace=st.none() | namespaces(),
    ttl=st.none() | NUMBERS,
    op=st.sampled_from(["mset", "mget", "mdelete", "yield_keys"]),
    pairs=st.lists(st.tuples(hostile_ids(), BYTES | NOT_BYTES), max_size=4) | hostile_ids(),
    keys=st.lists(hostile_ids(), max_size=4) | hostile_ids(),
    prefix=st.none() | hostile_ids(),
)
async def test_kv_store_round_trips_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    namespace: Any,
    ttl: Any,
    op: str,
    pairs: Any,
    keys: Any,
    prefix: Any,
) -> None:
    """`MemfoldKVStore` built with hostile namespaces and TTLs, and its ``mset``, ``mget``,
    ``mdelete`` and ``yield_keys`` (and ``amset``, ``amget``, ``amdelete``, ``ayield_keys``)
    with hostile keys, values and prefixes: values read back exactly as set, or a memfold error
    is raised and nothing changed; the canary records are unchanged."""
    try:
        kv = MemfoldKVStore(mstore, namespace=namespace, ttl_seconds=ttl)
        if op == "mset":
            await _run(use_async, lambda: kv.mset(pairs), lambda: kv.amset(pairs))
            latest = dict(pairs)
            expired = ttl is not None and ttl < 60  # a key may expire before it is read
            got = kv.mget(list(latest))
            assert [g for g in got if not (expired and g is None)] == [
                v for v, g in zip(latest.values(), got, strict=True) if not (expired and g is None)
            ]
        elif op == "mget":
            got = await _run(use_async, lambda: kv.mget(keys), lambda: kv.amget(keys))
            assert len(got) == len(keys)
        elif op == "mdelete":
            await _run(use_async, lambda: kv.mdelete(keys), lambda: kv.amdelete(keys))
            assert kv.mget(list(keys)) == [None] * len(keys)
        else:

            async def collect() -> list[str]:
                return [k async for k in kv.ayield_keys(prefix=prefix)]

            found = await _run(use_async, lambda: list(kv.yield_keys(prefix=prefix)), collect)
            assert all(k.startswith(prefix) for k in found)
    except MemfoldError:
        pass
    canary.check()


# -- Embeddings ---------------------------------------------------------------------------------


def _valid_text(text: Any) -> bool:
    """Whether ``text`` is a str of valid Unicode."""
    return isinstance(text, str) and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


class HostileEmbeddings(Embeddings):
    """A LangChain model that answers with the vectors it is given (good or not)."""

    def __init__(self, vector: Any) -> None:
        self.vector = vector

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vector for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector  # type: ignore[no-any-return]


@FUZZ
@given(
    texts=st.lists(hostile_text(), max_size=3) | hostile_ids(),
    kind=st.sampled_from(["document", "query"]) | hostile_ids(),
    vector=vectors(MEMORY_DIMS),
    model=st.none() | hostile_ids(),
    dimensions=st.none() | NUMBERS,
)
async def test_embedders_embed_or_refuse(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    texts: Any,
    kind: Any,
    vector: Any,
    model: Any,
    dimensions: Any,
) -> None:
    """`MemfoldEmbeddings` (``embed_documents``, ``embed_query`` and their ``a`` twins) over a
    memfold embedder, and a store embedding through `EmbeddingsEmbedder` (``embed``/``aembed``)
    whose LangChain model returns hostile vectors: each returns one finite vector per text or
    raises a memfold error, and a store writes a record only with a vector it can keep."""
    try:
        assert check_embed_args(texts, kind) == list(texts)
    except InvalidInput:
        assert kind not in ("document", "query") or not (
            isinstance(texts, list | tuple) and all(map(_valid_text, texts))
        )
    lc = MemfoldEmbeddings(HashingEmbedder(MEMORY_DIMS))
    try:
        if use_async:
            docs = await lc.aembed_documents(texts)
            query = await lc.aembed_query(texts)
        else:
            docs = lc.embed_documents(texts)
            query = lc.embed_query(texts)
        assert len(docs) == len(texts)
        assert all(len(v) == MEMORY_DIMS for v in [*docs, query])
    except MemfoldError:
        pass
    await embeds_or_refuses(
        lambda: EmbeddingsEmbedder(HostileEmbeddings(vector), model=model, dimensions=dimensions),
        texts,
        kind,
        use_async,
    )
    canary.check()


# -- Vector store -------------------------------------------------------------------------------


@st.composite
def documents(draw: st.DrawFn) -> Document:
    """Documents with hostile text, metadata and ids (those LangChain accepts)."""
    try:
        return Document(
            page_content=draw(hostile_text(max_size=40)),
            metadata=draw(st.dictionaries(hostile_text(max_size=8), json_values(max_leaves=4),
                                          max_size=3)),
            id=draw(st.none() | hostile_text(max_size=12)),
        )  # fmt: skip
    except ValidationError:
        reject()


@FUZZ
@given(
    namespace=st.none() | namespaces(),
    docs=st.lists(documents(), max_size=3),
    ids=st.none() | st.lists(st.none() | hostile_ids(), max_size=3),
    as_texts=st.booleans(),
)
async def test_vector_store_adds_exactly_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    namespace: Any,
    docs: list[Document],
    ids: Any,
    as_texts: bool,
) -> None:
    """`MemfoldVectorStore` built on hostile namespaces, and ``add_documents`` or
    ``add_texts`` (and their ``a`` twins) of hostile documents and ids: ``get_by_ids`` reads
    each back exactly, or a memfold error is raised and nothing was added; the canary records
    are unchanged."""
    texts, metadatas = [d.page_content for d in docs], [d.metadata for d in docs]
    try:
        vs = MemfoldVectorStore(mstore, namespace=namespace)
        before = mstore.count(vs.namespace)
        try:
            if as_texts:
                added = await _run(
                    use_async,
                    lambda: vs.add_texts(texts, metadatas, ids=ids),
                    lambda: vs.aadd_texts(texts, metadatas, ids=ids),
                )
            else:
                added = await _run(
                    use_async,
                    lambda: vs.add_documents(docs, ids=ids),
                    lambda: vs.aadd_documents(docs, ids=ids),
                )
        except MemfoldError:
            assert mstore.count(vs.namespace) == before
        else:
            latest = {i: d for i, d in zip(added, docs, strict=True)}
            got = {d.id: d for d in vs.get_by_ids(list(latest))}
            for i, doc in latest.items():
                assert (got[i].page_content, got[i].metadata) == (doc.page_content, doc.metadata)
    except MemfoldError:
        pass
    canary.check()


@FUZZ
@given(
    op=st.sampled_from(
        ["similarity_search", "similarity_search_with_score", "similarity_search_by_vector",
         "max_marginal_relevance_search", "max_marginal_relevance_search_by_vector", "delete",
         "get_by_ids"]
    ),
    query=hostile_text() | hostile_ids(),
    vector=vectors(MEMORY_DIMS),
    k=NUMBERS,
    fetch_k=NUMBERS,
    lambda_mult=NUMBERS,
    filter=filters(),
    ids=st.none() | st.lists(hostile_ids(), max_size=3) | hostile_ids(),
)  # fmt: skip
async def test_vector_store_reads_and_deletes_answer_or_refuse(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    op: str,
    query: Any,
    vector: Any,
    k: Any,
    fetch_k: Any,
    lambda_mult: Any,
    filter: Any,
    ids: Any,
) -> None:
    """Searches (``similarity_search``, ``similarity_search_with_score``,
    ``similarity_search_by_vector``, ``max_marginal_relevance_search`` and its ``_by_vector``
    form), ``delete`` and ``get_by_ids``, sync and async, with hostile queries, vectors, ``k``,
    ``fetch_k``, ``lambda_mult``, filters and ids answer at most ``k`` documents or raise a
    memfold error, and never touch records outside the vector store's namespace."""
    vs = MemfoldVectorStore(mstore, namespace=("fuzz", "docs"))
    vs.add_texts(["green tea", "black coffee", "green tea and lemon"], [{"n": 1}, {}, {"n": 2}])
    method = ("a" if use_async else "") + op
    try:
        if op == "delete":
            args: tuple[Any, ...] = (ids,)
            kwargs: dict[str, Any] = {}
        elif op == "get_by_ids":
            args, kwargs = (ids,), {}
        elif op.startswith("max_marginal"):
            first = vector if op.endswith("vector") else query
            args, kwargs = (first, k, fetch_k, lambda_mult), {"filter": filter}
        else:
            args = (vector if op.endswith("vector") else query, k)
            kwargs = {"filter": filter}
        found = getattr(vs, method)(*args, **kwargs)
        found = await found if use_async else found
        if op.startswith(("similarity", "max_marginal")):
            assert len(found) <= k
    except MemfoldError:
        pass
    canary.check()


@FUZZ_SLOW
@given(
    texts=st.lists(hostile_text(max_size=20), max_size=3) | hostile_ids(),
    metadatas=st.none() | st.lists(json_objects(max_leaves=3), max_size=3),
    ids=st.none() | st.lists(hostile_ids(), max_size=3),
    namespace=st.none() | namespaces(),
)
async def test_from_texts_stores_exactly_or_refuses(
    tmp_path: Path, use_async: bool, texts: Any, metadatas: Any, ids: Any, namespace: Any
) -> None:
    """`MemfoldVectorStore.from_texts` (and ``afrom_texts``) with hostile texts, metadata, ids
    and namespaces builds a store holding exactly those documents, or raises a memfold
    error."""
    embedding = DeterministicFakeEmbedding(size=MEMORY_DIMS)
    url = f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
    try:
        if use_async:
            vs = await MemfoldVectorStore.afrom_texts(
                texts, embedding, metadatas, ids=ids, store=url, namespace=namespace
            )
        else:
            vs = MemfoldVectorStore.from_texts(
                texts, embedding, metadatas, ids=ids, store=url, namespace=namespace
            )
    except MemfoldError:
        return
    try:
        stored = vs.store.list_records(vs.namespace, limit=100)
        written = [(t, (metadatas or [{}] * len(texts))[n]) for n, t in enumerate(texts)]
        if ids is None:
            assert sorted(repr((r.text, r.value)) for r in stored) == sorted(map(repr, written))
        else:
            assert {r.id: (r.text, r.value) for r in stored} == dict(zip(ids, written, strict=True))
    finally:
        await vs.store.aclose()


# -- Journaled tools ----------------------------------------------------------------------------


@pytest.fixture
async def journal(backend: str, tmp_path: Path) -> AsyncIterator[EffectJournal]:
    """An effect journal of each backend, holding a canary call in a thread of its own."""
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'journal.db'}"
    opened = open_journal(url)
    opened.record("memfold-canary", "call-0", {"kept": True})
    yield opened
    await opened.store.aclose()


@FUZZ
@given(
    tool_input=st.fixed_dictionaries(
        {"name": st.just("echo"), "args": st.just({"x": 1}), "id": hostile_ids(),
         "type": st.just("tool_call")}
    ) | json_values(max_leaves=3),
    thread_id=st.none() | hostile_ids(),
    namespace=hostile_ids(),
    tenant=st.none() | hostile_ids(),
    output=json_values(max_leaves=6),
    wrapped=st.sampled_from(["tool", "not a tool", None, 1]),
)  # fmt: skip
async def test_journaled_tool_replays_exactly_or_refuses(
    journal: EffectJournal,
    use_async: bool,
    tool_input: Any,
    thread_id: Any,
    namespace: Any,
    tenant: Any,
    output: Any,
    wrapped: Any,
) -> None:
    """`journaled` of hostile values, and `JournaledTool.invoke` (and ``ainvoke``) with hostile
    tool calls, thread ids, checkpoint namespaces, tenants and outputs: the first call runs the
    tool once and a second returns the same output without running it, or a memfold error is
    raised; the journal's canary call is unchanged."""
    runs: list[int] = []

    @tool
    def echo(x: int) -> Any:
        """Return the fuzzed output."""
        runs.append(x)
        return output

    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace}}
    try:
        safe = journaled(echo if wrapped == "tool" else wrapped, journal, tenant=tenant)
        assert isinstance(safe, JournaledTool)
        if use_async:
            first = await safe.ainvoke(tool_input, config)
            second = await safe.ainvoke(tool_input, config)
        else:
            first = safe.invoke(tool_input, config)
            second = safe.invoke(tool_input, config)
        assert runs == [1]
        assert _same(second, first)
    except MemfoldError:
        assert len(runs) <= 1
    canary = journal.get("memfold-canary", "call-0")
    assert canary is not None
    assert canary.value == journal.get("memfold-canary", "call-0").value  # type: ignore[union-attr]


# -- Compaction ---------------------------------------------------------------------------------


def _records() -> st.SearchStrategy[Any]:
    """Compaction records as a checkpointer hands them back: hostile dicts, and real ones with
    a field made hostile."""
    real = {"version": 2, "segments": ["Bo is 3."], "first_id": "h0", "last_id": "a3",
            "end": 4, "covered": 8, "folds": []}  # fmt: skip
    return st.one_of(
        st.none(),
        json_objects(max_leaves=6),
        st.tuples(st.sampled_from(sorted(real)), json_values(max_leaves=3)).map(
            lambda kv: real | {kv[0]: kv[1]}
        ),
        st.just(real),
    )


@st.composite
def _histories(draw: st.DrawFn) -> Any:
    """Agent histories: LangChain messages with ids, and things that are not histories."""
    return draw(
        st.lists(lc_messages().filter(lambda m: m.id), max_size=12)
        | st.sampled_from([None, "hi", [None], [1]])
    )


@FUZZ
@given(
    history=_histories(),
    record=_records(),
    strategy=st.just("good") | st.sampled_from([None, 200, "x"]),
    reply=hostile_text(max_size=40),
    prompt=st.none() | hostile_text(max_size=30) | st.just("{messages} {nope}"),
)
async def test_compaction_folds_or_refuses(
    use_async: bool, history: Any, record: Any, strategy: Any, reply: str, prompt: Any
) -> None:
    """`compact_messages` (``acompact_messages``), `MemfoldCompactionMiddleware` built with
    hostile strategies, its ``before_model`` and ``wrap_model_call`` (and their ``a`` twins),
    and `ChatModelSummarizer` built with hostile prompts (its ``summarize``), over hostile
    histories and stored records: each returns a view of the caller's own messages (and a
    record) or raises a memfold error; the history passed in is never changed."""
    running = RunningSummary(60, counter=ApproximateCounter()) if strategy == "good" else strategy
    model = FakeListChatModel(responses=[reply] * 50)
    before = list(history) if isinstance(history, list) else history
    try:
        summarizer = ChatModelSummarizer(model, **({} if prompt is None else {"summarize": prompt}))
        middleware = MemfoldCompactionMiddleware(running, summarizer)
        state = {"messages": history, "memfold_compaction": record}
        request = ModelRequest(model=model, messages=history, state=state)  # type: ignore[arg-type]
        if use_async:
            view, _ = await acompact_messages(history, running, summarizer, record)
            update = await middleware.abefore_model(state, None)  # type: ignore[arg-type]
            sent = await middleware.awrap_model_call(request, _aecho)
        else:
            view, _ = compact_messages(history, running, summarizer, record)
            update = middleware.before_model(state, None)  # type: ignore[arg-type]
            sent = middleware.wrap_model_call(request, lambda r: r.messages)  # type: ignore[arg-type,return-value]
        assert update is None or set(update) == {"memfold_compaction"}
        ids = {m.id for m in history}
        assert all(m.id in ids or m.type == "human" for m in [*view, *sent])
    except MemfoldError:
        pass
    assert history == before


async def _aecho(request: ModelRequest[Any]) -> Any:
    return request.messages


@FUZZ
@given(
    batch=st.lists(messages(), max_size=3),
    previous=st.none() | hostile_text(),
    max_tokens=st.integers(-5, 10**6),
    reply=hostile_text(max_size=40),
    prompt=st.none() | hostile_text(max_size=30) | st.sampled_from(["{0}", "{x.y}", "{", "}"]),
)
async def test_chat_model_summarizer_answers_or_refuses(
    use_async: bool,
    batch: list[Message],
    previous: Any,
    max_tokens: int,
    reply: str,
    prompt: Any,
) -> None:
    """`ChatModelSummarizer` with hostile prompts, and its ``summarize`` (``asummarize``) of
    hostile requests: the model's reply, stripped, or a memfold error."""
    try:
        request = SummarizeRequest(tuple(batch), previous, max_tokens)
        summarizer = ChatModelSummarizer(
            FakeListChatModel(responses=[reply]),
            **({} if prompt is None else {"summarize": prompt, "extend": prompt,
                                          "condense": prompt}),
        )  # fmt: skip
        got = await summarizer.asummarize(request) if use_async else summarizer.summarize(request)
        assert got == reply.strip()
    except MemfoldError:
        pass


# -- Memory tools -------------------------------------------------------------------------------


@FUZZ
@given(
    template=namespaces() | st.just(("acme", "{user_id}", "memories")),
    user_id=hostile_ids(),
    name=st.sampled_from(["remember", "recall", "update_memory", "forget"]),
    text=hostile_text(),
    limit=st.integers(-3, 60) | st.integers(),
    direct=st.sampled_from([RememberTool, RecallTool, UpdateTool, ForgetTool]),
)
async def test_memory_tools_answer_or_refuse(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    template: Any,
    user_id: Any,
    name: str,
    text: str,
    limit: int,
    direct: type[BaseTool],
) -> None:
    """`memory_tools` and each tool class (`RememberTool`, `RecallTool`, `UpdateTool`,
    `ForgetTool`) built on hostile namespace templates, invoked (sync and ``ainvoke``) with
    hostile arguments and ``user_id``: a remembered text is stored exactly in the user's
    namespace, every tool answers a string or raises a memfold error (or LangChain's own
    `ValidationError` for a ``limit`` outside its schema's 1..50), and the canary records are
    unchanged."""
    try:
        direct(store=mstore, namespace=template)  # type: ignore[call-arg]
        tools = {t.name: t for t in memory_tools(mstore, template)}
    except MemfoldError:
        canary.check()
        return
    args = {
        "remember": {"content": text},
        "recall": {"query": text, "limit": limit},
        "update_memory": {"id": text, "content": text},
        "forget": {"id": text},
    }[name]
    config = {"configurable": {"user_id": user_id}}
    chosen = tools[name]
    try:
        if use_async:
            answer = await chosen.ainvoke(args, config)  # type: ignore[arg-type]
        else:
            answer = chosen.invoke(args, config)  # type: ignore[arg-type]
        assert isinstance(answer, str)
        if name == "remember":
            stored_id = answer.removeprefix("Remembered (id: ").removesuffix(").")
            namespace = tuple(user_id if label == "{user_id}" else label for label in template)
            got = mstore.get(namespace, stored_id)
            assert got is not None
            assert got.text == text
    except MemfoldError:
        pass
    except ValidationError:
        assert name == "recall"
        assert not 1 <= limit <= 50
    canary.check()


# -- Regressions --------------------------------------------------------------------------------


def _deep_message() -> HumanMessage:
    return HumanMessage("deep", additional_kwargs={"k": nested(2_000)})


def _tea(size: int = MEMORY_DIMS) -> list[float]:
    return [1.0] + [0.0] * (size - 1)


HI = Message(role="user", content="hi")
SET_ARGUMENTS = Message(role="assistant", tool_calls=(ToolCall("c", "f", {"a": {1, 2}}),))


def _summarize(message: Message, **prompts: str) -> str:
    summarizer = ChatModelSummarizer(FakeListChatModel(responses=["x"]), **prompts)
    return summarizer.summarize(SummarizeRequest((message,), None, 50))


REGRESSIONS: list[tuple[str, Any]] = [
    ("embed_query of a list", lambda s: MemfoldEmbeddings(HashingEmbedder(8)).embed_query([])),
    (
        "embed_documents of a str",
        lambda s: MemfoldEmbeddings(HashingEmbedder(8)).embed_documents("ab"),
    ),
    ("embed a lone surrogate", lambda s: HashingEmbedder(8).embed(["\ud800"])),
    (
        "embed with an unknown kind",
        lambda s: EmbeddingsEmbedder(DeterministicFakeEmbedding(size=8)).embed(["a"], kind="x"),
    ),
    ("mset of a str", lambda s: MemfoldKVStore(s).mset("ab")),
    ("mset of a str value", lambda s: MemfoldKVStore(s).mset([("k", "text")])),
    ("mget of a str", lambda s: MemfoldKVStore(s).mget("abc")),
    ("yield_keys with an int prefix", lambda s: list(MemfoldKVStore(s).yield_keys(prefix=0))),
    ("kv namespace of a str", lambda s: MemfoldKVStore(s, namespace="ns")),
    ("add_texts of a str", lambda s: MemfoldVectorStore(s).add_texts("abc")),
    ("add_texts of ints", lambda s: MemfoldVectorStore(s).add_texts([1])),
    ("ids of a str", lambda s: MemfoldVectorStore(s).add_documents([Document("a")], ids="x")),
    (
        "from_texts of a str",
        lambda s: MemfoldVectorStore.from_texts("abc", DeterministicFakeEmbedding(size=8)),
    ),
    (
        "MMR with k None",
        lambda s: MemfoldVectorStore(s).max_marginal_relevance_search_by_vector(_tea(), None),
    ),
    (
        "MMR with lambda 2",
        lambda s: MemfoldVectorStore(s).max_marginal_relevance_search_by_vector(_tea(), 2, 20, 2.0),
    ),
    ("MMR of a non-str query", lambda s: MemfoldVectorStore(s).max_marginal_relevance_search(None)),
    ("to_memfold of a deep message", lambda s: to_memfold(_deep_message())),
    ("to_memfold of a dict", lambda s: to_memfold({"type": "human"})),
    ("to_langchain of a str", lambda s: to_langchain("hi")),
    (
        "compact_messages of None",
        lambda s: compact_messages(None, RunningSummary(60, counter=ApproximateCounter())),
    ),
    ("middleware without a RunningSummary", lambda s: MemfoldCompactionMiddleware(None)),
    ("a prompt with an unknown field", lambda s: _summarize(HI, summarize="{x}")),
    ("tool arguments that are not JSON", lambda s: _summarize(SET_ARGUMENTS)),
    ("journaled with an int tenant", lambda s: journaled(_echo, open_journal(), tenant=1)),
    (
        "JournaledTool without a journal",
        lambda s: JournaledTool(name="x", description="x", tool=_echo, journal=None),
    ),
    ("memory_tools on no namespace", lambda s: memory_tools(s, None)),
    ("RecallTool on a str namespace", lambda s: RecallTool(store=s, namespace="ns")),
]
"""Calls that raised a builtin error (or did the wrong thing) before the fuzz suite found them."""


@tool
def _echo(x: int) -> int:
    """Return x."""
    return x


@pytest.mark.parametrize(("case", "call"), REGRESSIONS, ids=[c for c, _ in REGRESSIONS])
def test_found_bugs_raise_invalid_input(mstore: BaseMemoryStore, case: str, call: Any) -> None:
    """Each input the fuzzing found crashing an adapter (or storing something else than was
    given) now raises `InvalidInput` and stores nothing."""
    before = mstore.count((mstore.resolve_tenant(None),))
    with pytest.raises(InvalidInput):
        call(mstore)
    assert mstore.count((mstore.resolve_tenant(None),)) == before
