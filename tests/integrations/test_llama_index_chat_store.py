"""MemfoldChatStore: a LlamaIndex BaseChatStore over memfold threads, sync and async."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core.base.llms.types import TextBlock, ToolCallBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.storage.chat_store import SimpleChatStore

from memfold import InvalidInput, open_store
from memfold.integrations.llama_index import MemfoldChatStore
from memfold.stores import BaseThreadStore


def msg(role: str, text: str, **kwargs: Any) -> ChatMessage:
    """A one-text-block ChatMessage."""
    return ChatMessage(role=role, content=text, **kwargs)


CHAT = [
    msg("system", "Be brief."),
    msg("user", "What is 2 + 3?"),
    ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="c1", tool_name="add", tool_kwargs={"a": 2, "b": 3})],
    ),
    msg("tool", "5", additional_kwargs={"tool_call_id": "c1", "name": "add"}),
    msg("assistant", "5."),
]


class ChatApi:
    """Calls MemfoldChatStore's sync methods or their async twins (LlamaIndex's names)."""

    ASYNC_NAMES: ClassVar[dict[str, str]] = {"add_message": "async_add_message"}

    def __init__(self, chat_store: MemfoldChatStore, use_async: bool) -> None:
        self.chat_store = chat_store
        self.use_async = use_async

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.use_async:
                method = self.ASYNC_NAMES.get(name, "a" + name)
                return await getattr(self.chat_store, method)(*args, **kwargs)
            return getattr(self.chat_store, name)(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
def chat(request: pytest.FixtureRequest, store: BaseThreadStore) -> ChatApi:
    """A MemfoldChatStore on each backend, driven through its sync or its async methods."""
    return ChatApi(MemfoldChatStore(store), request.param == "async")


async def test_set_get_add_round_trip(chat: ChatApi) -> None:
    """set_messages then add_message read back equal, in order."""
    await chat.set_messages("k1", CHAT[:3])
    await chat.add_message("k1", CHAT[3])
    await chat.add_message("k1", CHAT[4])
    assert await chat.get_messages("k1") == CHAT
    await chat.set_messages("k1", CHAT[1:2])
    assert await chat.get_messages("k1") == CHAT[1:2]


async def test_delete_message_uses_list_positions(chat: ChatApi) -> None:
    """delete_message takes a list position (negative counts from the end); out of range is None."""
    await chat.set_messages("k1", CHAT)
    assert await chat.delete_message("k1", 1) == CHAT[1]
    assert await chat.delete_message("k1", -1) == CHAT[4]
    assert await chat.delete_message("k1", 3) is None
    assert await chat.delete_message("k1", -4) is None
    assert await chat.delete_message("nope", 0) is None
    assert await chat.get_messages("k1") == [CHAT[0], CHAT[2], CHAT[3]]


async def test_delete_keeps_memfold_ids_of_the_rest(chat: ChatApi) -> None:
    """Deleting one message keeps the ids, times and metadata of the others in the store."""
    await chat.set_messages("k1", CHAT)
    before = chat.chat_store.store.load("k1")
    await chat.delete_message("k1", 2)
    assert chat.chat_store.store.load("k1") == before[:2] + before[3:]


async def test_delete_last_message(chat: ChatApi) -> None:
    """delete_last_message removes and returns the newest message, or None when there is none."""
    await chat.set_messages("k1", CHAT[:2])
    assert await chat.delete_last_message("k1") == CHAT[1]
    assert await chat.delete_last_message("k1") == CHAT[0]
    assert await chat.delete_last_message("k1") is None
    assert await chat.delete_last_message("nope") is None


async def test_delete_messages_and_keys(chat: ChatApi) -> None:
    """delete_messages returns a key's messages and drops the key; an unknown key gives None."""
    await chat.set_messages("k1", CHAT)
    await chat.set_messages("k2", CHAT[:1])
    assert sorted(await chat.get_keys()) == ["k1", "k2"]
    assert await chat.delete_messages("k1") == CHAT
    assert await chat.delete_messages("k1") is None
    assert await chat.get_keys() == ["k2"]
    assert await chat.get_messages("k1") == []


async def test_reads_return_fresh_objects(chat: ChatApi) -> None:
    """Mutating messages returned by a read never changes what is stored."""
    await chat.set_messages("k1", CHAT)
    first = await chat.get_messages("k1")
    first[0].blocks.insert(0, TextBlock(text="memory block"))
    first[3].additional_kwargs["tool_call_id"] = "changed"
    first.clear()
    assert await chat.get_messages("k1") == CHAT


async def test_failed_set_messages_keeps_old_messages(chat: ChatApi) -> None:
    """set_messages with a message that cannot be stored raises and leaves the key as it was."""
    await chat.set_messages("k1", CHAT)
    bad = msg("user", "x", additional_kwargs={"f": object()})
    with pytest.raises(InvalidInput):
        await chat.set_messages("k1", [CHAT[0], bad])
    assert await chat.get_messages("k1") == CHAT


async def test_async_methods_use_only_the_async_store_api(
    store: BaseThreadStore, forbid_sync_io: Callable[[BaseThreadStore], None]
) -> None:
    """Every async twin runs with the store's sync I/O disabled."""
    chat_store = MemfoldChatStore(store)
    forbid_sync_io(store)
    await chat_store.aset_messages("k1", CHAT)
    await chat_store.async_add_message("k1", CHAT[0])
    assert len(await chat_store.aget_messages("k1")) == 6
    assert await chat_store.adelete_message("k1", 5) == CHAT[0]
    assert await chat_store.adelete_last_message("k1") == CHAT[4]
    assert await chat_store.aget_keys() == ["k1"]
    assert await chat_store.adelete_messages("k1") == CHAT[:4]


def test_tenants_see_only_their_keys(store: BaseThreadStore) -> None:
    """Two chat stores with different tenants share nothing, keys included."""
    alice, bob = MemfoldChatStore(store, tenant="alice"), MemfoldChatStore(store, tenant="bob")
    alice.set_messages("k1", CHAT)
    assert bob.get_keys() == []
    assert bob.get_messages("k1") == []
    assert alice.get_keys() == ["k1"]


def test_many_keys_are_all_listed(store: BaseThreadStore) -> None:
    """get_keys pages through the store and lists every key once."""
    chat_store = MemfoldChatStore(store)
    names = [f"k{i}" for i in range(1005)]
    for name in names:
        chat_store.add_message(name, CHAT[1])
    assert sorted(chat_store.get_keys()) == sorted(names)


def test_url_opens_a_store(tmp_path: Path) -> None:
    """A sqlite URL opens a persistent store that a second chat store on the URL reads."""
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    MemfoldChatStore(url).set_messages("k1", CHAT)
    assert MemfoldChatStore(url).get_messages("k1") == CHAT


operations = st.lists(
    st.one_of(
        st.tuples(st.just("set_messages"), st.sampled_from(["a", "b"]), st.integers(1, 4)),
        st.tuples(st.just("add_message"), st.sampled_from(["a", "b"]), st.integers(0, 4)),
        st.tuples(st.just("delete_message"), st.sampled_from(["a", "b"]), st.integers(0, 5)),
        st.tuples(st.just("delete_last_message"), st.sampled_from(["a", "b"]), st.just(0)),
        st.tuples(st.just("delete_messages"), st.sampled_from(["a", "b"]), st.just(0)),
        st.tuples(st.just("get_messages"), st.sampled_from(["a", "b"]), st.just(0)),
    ),
    max_size=12,
)


def apply(chat_store: Any, op: str, key: str, arg: int) -> Any:
    """Run one scripted operation; IndexError stands for SimpleChatStore's empty-list pop."""
    try:
        if op == "set_messages":
            return chat_store.set_messages(key, [m.model_copy(deep=True) for m in CHAT[:arg]])
        if op == "add_message":
            return chat_store.add_message(key, CHAT[arg].model_copy(deep=True))
        if op == "delete_message":
            return chat_store.delete_message(key, arg)
        return getattr(chat_store, op)(key)
    except IndexError:
        return None


@settings(max_examples=60, deadline=None)
@given(operations)
def test_behaves_like_simple_chat_store(script: list[tuple[str, str, int]]) -> None:
    """Any sequence of operations gives the same results and contents as SimpleChatStore."""
    ours, reference = MemfoldChatStore(open_store("memory://")), SimpleChatStore()
    for op, key, arg in script:
        assert apply(ours, op, key, arg) == apply(reference, op, key, arg), (op, key, arg)
    assert sorted(ours.get_keys()) == sorted(reference.get_keys())
    for key in ("a", "b"):
        assert ours.get_messages(key) == reference.get_messages(key)


def test_chat_memory_buffer_reads_and_writes_the_thread(store: BaseThreadStore) -> None:
    """ChatMemoryBuffer puts messages into the memfold thread and windows them by token limit."""
    chat_store = MemfoldChatStore(store)
    memory = ChatMemoryBuffer.from_defaults(
        chat_store=chat_store, chat_store_key="u1", token_limit=40
    )
    for i in range(6):
        memory.put(msg("user", f"question {i} " + "word " * 5))
        memory.put(msg("assistant", f"answer {i} " + "word " * 5))
    assert [m.text for m in store.load("u1")][:2] == [
        "question 0 " + "word " * 5,
        "answer 0 " + "word " * 5,
    ]
    window = memory.get()
    assert 0 < len(window) < 12
    assert window == memory.get_all()[-len(window) :]
    assert window[0].role.value == "user"
    memory.reset()
    assert chat_store.get_keys() == []


@pytest.mark.parametrize("use_async", [False, True], ids=["chat", "achat"])
async def test_simple_chat_engine_keeps_history(store: BaseThreadStore, use_async: bool) -> None:
    """SimpleChatEngine with MockLLM stores each turn, and the next turn's prompt includes it."""
    memory = ChatMemoryBuffer.from_defaults(
        chat_store=MemfoldChatStore(store), chat_store_key="u1", token_limit=2000
    )
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(), memory=memory)
    for text in ["My name is Ann.", "What is my name?"]:
        reply = await engine.achat(text) if use_async else engine.chat(text)
    assert "user: My name is Ann." in str(reply)
    stored = store.load("u1")
    assert [(m.role, m.text) for m in stored[::2]] == [
        ("user", "My name is Ann."),
        ("user", "What is my name?"),
    ]
    assert stored[3].role == "assistant"
    assert stored[3].text == str(reply)


def test_missing_llama_index_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the adapter without llama-index-core says to install memfold[llamaindex]."""
    for name in [n for n in sys.modules if n.startswith("memfold.integrations.llama_index")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_index.core", None)
    with pytest.raises(ImportError, match=r"pip install 'memfold\[llamaindex\]'"):
        importlib.import_module("memfold.integrations.llama_index.chat_store")
