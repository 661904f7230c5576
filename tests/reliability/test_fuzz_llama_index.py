"""Hostile input to the LlamaIndex adapter's entry points (so far the chat store and the message
converters; the rest are listed in `tests.reliability.coverage.GAPS`), on memory and SQLite
stores, sync and async: each call returns (and what it stores reads back exactly) or raises a
`memfold.errors` error, and canary data written before is unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import ChatMessage

from memfold import InvalidInput, MemfoldError, Message
from memfold.integrations.llama_index import (
    LlamaIndexEmbedder,
    MemfoldChatStore,
    MemfoldEmbedding,
    to_llama_index,
    to_memfold,
)
from memfold.memories import open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.stores import BaseThreadStore
from tests.reliability.fuzzing import (
    FUZZ,
    as_json,
    embeds_or_refuses,
    hostile_ids,
    hostile_text,
    json_values,
    messages,
    numbers,
    vectors,
)
from tests.reliability.test_fuzz_langchain import _plain_json
from tests.reliability.test_fuzz_threads import Canary as ThreadCanary
from tests.support import MEMORY_DIMS, Api

NUMBERS = numbers(-5, 5)


@st.composite
def li_messages(draw: st.DrawFn) -> ChatMessage:
    """LlamaIndex chat messages with hostile roles, content and keyword arguments (those
    LlamaIndex itself accepts), and ones made from hostile memfold messages."""
    try:
        if draw(st.booleans()):
            return to_llama_index(draw(messages()))
        return ChatMessage(
            role=draw(st.sampled_from(["user", "assistant", "system", "tool", "chatbot",
                                       "model", "developer", "function"])),
            content=draw(st.none() | hostile_text(max_size=40)),
            additional_kwargs=draw(st.dictionaries(hostile_text(max_size=8),
                                                   json_values(max_leaves=4), max_size=3)),
        )  # fmt: skip
    except Exception:  # LlamaIndex (or the converter) refuses it before a store sees it
        reject()


def _utf8_json(value: Any) -> bool:
    """Whether ``value`` is plain JSON (see `_plain_json`) of valid Unicode."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except (TypeError, ValueError, RecursionError):
        return False
    return _plain_json(value)


def _plain_host(message: ChatMessage) -> bool:
    """Whether a LlamaIndex message's fields are plain JSON of valid Unicode."""
    try:
        dumped = message.model_dump()
    except (ValueError, RecursionError):  # pydantic cannot dump it either
        return False
    return _utf8_json(dumped)


def _same(read: ChatMessage, written: ChatMessage) -> bool:
    """Whether a message read back is the one written (memfold's id and time aside)."""
    sent = as_json(to_memfold(written).to_dict())
    return {k: v for k, v in to_memfold(read).to_dict().items() if k in sent} == sent


@FUZZ
@given(
    message=messages() | st.sampled_from([None, "hi", {"role": "user"}, 1]),
    host=li_messages() | st.sampled_from([None, "hi", {"role": "user"}, 1]),
)
def test_converters_round_trip_or_refuse(message: Any, host: Any) -> None:
    """`to_memfold` then `to_llama_index` gives back the LlamaIndex message, and
    `to_llama_index` of any memfold message gives one `to_memfold` takes; a value that is not
    a message raises `InvalidInput`."""
    try:
        assert isinstance(to_memfold(to_llama_index(message)), Message)
    except InvalidInput:
        assert not isinstance(message, Message) or not _utf8_json(message.to_dict())
    try:
        again = to_llama_index(to_memfold(host))
    except InvalidInput:
        assert not isinstance(host, ChatMessage) or not _plain_host(host)
    else:
        if _plain_host(host):
            assert _same(again, host)


@FUZZ
@given(
    op=st.sampled_from(["set_messages", "add_message", "get_messages", "delete_messages",
                        "delete_message", "delete_last_message"]),
    key=hostile_ids(),
    tenant=st.none() | hostile_ids(),
    batch=st.lists(li_messages(), max_size=3) | st.sampled_from([None, "hi", [None]]),
    idx=NUMBERS,
)  # fmt: skip
async def test_chat_store_answers_or_refuses(
    tstore: BaseThreadStore,
    use_async: bool,
    op: str,
    key: Any,
    tenant: Any,
    batch: Any,
    idx: Any,
) -> None:
    """`MemfoldChatStore` built with hostile tenants, and ``set_messages``, ``add_message``,
    ``get_messages``, ``delete_messages``, ``delete_message`` and ``delete_last_message`` (and
    their async twins) with hostile keys, messages and positions: what is set reads back
    exactly, every call answers or raises a memfold error, and the canary threads are
    unchanged."""
    canary = ThreadCanary(Api(tstore, use_async))
    await canary.seed()
    try:
        chat = MemfoldChatStore(tstore, tenant=tenant)
        if op == "set_messages":
            if use_async:
                await chat.aset_messages(key, batch)
            else:
                chat.set_messages(key, batch)
            got = chat.get_messages(key)
            assert len(got) == len(batch)
            assert all(_same(r, w) for r, w in zip(got, batch, strict=True))
        elif op == "add_message":
            one = batch[0] if isinstance(batch, list) and batch else batch
            before = len(chat.get_messages(key))
            if use_async:
                await chat.async_add_message(key, one)
            else:
                chat.add_message(key, one)
            got = chat.get_messages(key)
            assert len(got) == before + 1
            assert _same(got[-1], one)
        elif op == "get_messages":
            got = await chat.aget_messages(key) if use_async else chat.get_messages(key)
            assert isinstance(got, list)
        elif op == "delete_messages":
            await chat.adelete_messages(key) if use_async else chat.delete_messages(key)
            assert chat.get_messages(key) == []
        elif op == "delete_message":
            await chat.adelete_message(key, idx) if use_async else chat.delete_message(key, idx)
        elif use_async:
            await chat.adelete_last_message(key)
        else:
            chat.delete_last_message(key)
    except MemfoldError:
        pass
    await canary.check()


SURROGATE_KEY = ChatMessage(role="user", content="x", additional_kwargs={"\ud800": 1})

REGRESSIONS: list[tuple[str, Any]] = [
    ("to_memfold of None", lambda s: to_memfold(None)),
    ("to_llama_index of a str", lambda s: to_llama_index("hi")),
    ("to_memfold of a lone surrogate key", lambda s: to_memfold(SURROGATE_KEY)),
    ("set_messages of None", lambda s: MemfoldChatStore(s).set_messages("t", None)),
    ("set_messages of a str", lambda s: MemfoldChatStore(s).set_messages("t", "hi")),
    ("delete_message at a str position", lambda s: MemfoldChatStore(s).delete_message("t", "3")),
    ("a tenant that is not a str", lambda s: MemfoldChatStore(s, tenant=("t",))),
    (
        "a query that is not a str",
        lambda s: MemfoldEmbedding(HashingEmbedder(8)).get_query_embedding(1),
    ),
    (
        "an unknown kind",
        lambda s: LlamaIndexEmbedder(MemfoldEmbedding(HashingEmbedder(8))).embed(["a"], kind="x"),
    ),
]
"""Calls that raised a builtin or pydantic error before the fuzz suite found them."""


@pytest.mark.parametrize(("case", "call"), REGRESSIONS, ids=[c for c, _ in REGRESSIONS])
async def test_found_bugs_raise_invalid_input(
    tstore: BaseThreadStore, case: str, call: Any
) -> None:
    """Each input the fuzzing found crashing the adapter now raises `InvalidInput`, and the
    canary threads are unchanged."""
    canary = ThreadCanary(Api(tstore, False))
    await canary.seed()
    with pytest.raises(InvalidInput):
        call(tstore)
    await canary.check()


class HostileEmbedding(BaseEmbedding):
    """A LlamaIndex model that answers with the vector it is given (good or not)."""

    vector: Any = None

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.vector  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self.vector  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.vector  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["document", "query"])
async def test_a_model_answer_llama_index_refuses_is_invalid_input(
    use_async: bool, kind: Any
) -> None:
    """A LlamaIndex model answering a nested list (which LlamaIndex's own events refuse with
    a pydantic error, found by the fuzzing) raises `InvalidInput`, and the store keeps nothing."""
    embedder = LlamaIndexEmbedder(HostileEmbedding(vector=[[1.0] * MEMORY_DIMS]))
    store = open_memory_store("memory://", embedder=embedder)
    refused = pytest.raises(InvalidInput, match="not one list of numbers per text")
    if use_async:
        with refused:
            await embedder.aembed(["text"], kind=kind)
        with pytest.raises(InvalidInput):
            await store.aput(("fuzz",), "text")
    else:
        with refused:
            embedder.embed(["text"], kind=kind)
        with pytest.raises(InvalidInput):
            store.put(("fuzz",), "text")
    assert store.count(("fuzz",)) == 0


@FUZZ
@given(
    texts=st.lists(hostile_text(), max_size=3) | hostile_ids(),
    kind=st.sampled_from(["document", "query"]) | hostile_ids(),
    vector=vectors(MEMORY_DIMS),
)
async def test_embeddings_embed_or_refuse(
    use_async: bool, texts: Any, kind: Any, vector: Any
) -> None:
    """`MemfoldEmbedding` over a memfold embedder, and a store embedding through
    `LlamaIndexEmbedder` (its ``embed``/``aembed``) whose LlamaIndex model returns hostile
    vectors: each returns one vector per text or raises a memfold error, and a store keeps a
    record only with a finite vector."""
    li = MemfoldEmbedding(HashingEmbedder(MEMORY_DIMS))
    batch = texts if isinstance(texts, list) else [texts]  # LlamaIndex iterates it first
    try:
        if use_async:
            got = await li.aget_text_embedding_batch(batch)
            query = await li.aget_query_embedding(texts)
        else:
            got = li.get_text_embedding_batch(batch)
            query = li.get_query_embedding(texts)
        assert len(got) == len(batch)
        assert len(query) == MEMORY_DIMS
    except MemfoldError:
        pass
    await embeds_or_refuses(
        lambda: LlamaIndexEmbedder(HostileEmbedding(vector=vector)), texts, kind, use_async
    )
