"""MemfoldChatMessageHistory: a LangChain chat history over a memfold thread, sync and async."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool

from memfold import Message
from memfold.integrations.langchain import MemfoldChatMessageHistory
from memfold.stores import BaseThreadStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TURN = [
    HumanMessage("What is 2 + 3?", id="h1", name="ann"),
    AIMessage(
        "",
        id="a1",
        tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call-1"}],
        usage_metadata={"input_tokens": 9, "output_tokens": 4, "total_tokens": 13},
    ),
    ToolMessage("5", tool_call_id="call-1", id="t1", artifact={"raw": 5}),
    AIMessage("It is 5.", id="a2", response_metadata={"finish_reason": "stop"}),
]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def without_ids(messages: list[BaseMessage]) -> list[BaseMessage]:
    """The messages with their ids blanked, to compare content that a store gave new ids to."""
    return [m.model_copy(update={"id": None}) for m in messages]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_added_messages_read_back_equal(store: BaseThreadStore, use_async: bool) -> None:
    """Messages added in one call read back equal, in order, on every backend."""
    history = MemfoldChatMessageHistory(store, "t1")
    if use_async:
        await history.aadd_messages(TURN)
        assert await history.aget_messages() == TURN
    else:
        history.add_messages(TURN)
        assert history.messages == TURN


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_clear_empties_only_this_thread(store: BaseThreadStore, use_async: bool) -> None:
    """clear/aclear remove this thread's messages and leave other threads alone."""
    history = MemfoldChatMessageHistory(store, "t1")
    other = MemfoldChatMessageHistory(store, "t2")
    history.add_messages(TURN)
    other.add_messages(TURN[:1])
    if use_async:
        await history.aclear()
    else:
        history.clear()
    assert history.messages == []
    assert other.messages == TURN[:1]


def test_messages_is_a_fresh_list_of_fresh_objects(store: BaseThreadStore) -> None:
    """Changing the list or a message from `messages` changes nothing stored."""
    history = MemfoldChatMessageHistory(store, "t1")
    history.add_messages(TURN)
    first = history.messages
    first.pop()
    assert isinstance(first[1], AIMessage)
    first[1].tool_calls[0]["args"]["a"] = 100
    first[0].additional_kwargs["x"] = 1
    assert history.messages == TURN
    assert history.messages is not history.messages


def test_add_messages_is_one_store_append(
    store: BaseThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk add is a single store append; adding nothing touches no storage."""
    calls: list[int] = []
    append = store.append

    def counting_append(thread_id: str, messages: list[Message], **kwargs: Any) -> Any:
        calls.append(len(messages))
        return append(thread_id, messages, **kwargs)

    monkeypatch.setattr(store, "append", counting_append)
    history = MemfoldChatMessageHistory(store, "t1")
    history.add_messages(TURN)
    history.add_messages([])
    assert calls == [len(TURN)]
    assert store.count("t1") == len(TURN)


async def test_async_methods_use_only_the_async_store_api(
    store: BaseThreadStore, forbid_sync_io: Callable[[BaseThreadStore], None]
) -> None:
    """aadd_messages, aget_messages and aclear run with the store's sync I/O disabled."""
    forbid_sync_io(store)
    history = MemfoldChatMessageHistory(store, "t1")
    await history.aadd_messages(TURN)
    await history.aadd_messages([HumanMessage("more", id="h2")])
    assert [m.id for m in await history.aget_messages()] == ["h1", "a1", "t1", "a2", "h2"]
    await history.aclear()
    assert await history.aget_messages() == []


def test_tenants_are_separate(store: BaseThreadStore) -> None:
    """The same thread id under two tenants holds two separate conversations."""
    alice = MemfoldChatMessageHistory(store, "t1", tenant="alice")
    bob = MemfoldChatMessageHistory(store, "t1", tenant="bob")
    alice.add_messages(TURN[:1])
    assert bob.messages == []
    assert alice.messages == TURN[:1]


def test_url_opens_a_store(tmp_path: Path) -> None:
    """A sqlite URL opens a persistent store; each memory:// URL opens a separate empty one."""
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    MemfoldChatMessageHistory(url, "t1").add_messages(TURN)
    assert MemfoldChatMessageHistory(url, "t1").messages == TURN
    MemfoldChatMessageHistory("memory://", "t1").add_messages(TURN)
    assert MemfoldChatMessageHistory("memory://", "t1").messages == []


def test_store_assigns_ids_to_messages_without_one(store: BaseThreadStore) -> None:
    """A message added without an id reads back with the id the store gave it."""
    history = MemfoldChatMessageHistory(store, "t1")
    history.add_messages([HumanMessage("hi")])
    [read] = history.messages
    assert read.id
    assert read.id == store.load("t1")[0].id


def with_history(store: BaseThreadStore, model: Any) -> RunnableWithMessageHistory:
    """The model wrapped so each session_id reads and writes its own memfold thread."""
    return RunnableWithMessageHistory(model, lambda sid: MemfoldChatMessageHistory(store, sid))


def test_runnable_with_message_history_invoke(
    store: BaseThreadStore, fake_model: Callable[..., Any]
) -> None:
    """With sync invoke, each turn is saved and the next turn's model call sees it."""
    model = fake_model("Hello Ann!", "Your name is Ann.")
    chain = with_history(store, model)
    config: Any = {"configurable": {"session_id": "s1"}}
    chain.invoke("Hi, I am Ann", config=config)
    chain.invoke("What is my name?", config=config)
    saved = MemfoldChatMessageHistory(store, "s1").messages
    assert [(m.type, m.content) for m in saved] == [
        ("human", "Hi, I am Ann"),
        ("ai", "Hello Ann!"),
        ("human", "What is my name?"),
        ("ai", "Your name is Ann."),
    ]
    assert without_ids(model.seen[1]) == without_ids(saved[:3])


async def test_runnable_with_message_history_ainvoke(
    store: BaseThreadStore, fake_model: Callable[..., Any]
) -> None:
    """With ainvoke, each turn is saved and the next turn's model call sees it."""
    model = fake_model("Hello Ann!", "Your name is Ann.")
    chain = with_history(store, model)
    config: Any = {"configurable": {"session_id": "s1"}}
    await chain.ainvoke([HumanMessage("Hi, I am Ann")], config=config)
    await chain.ainvoke([HumanMessage("What is my name?")], config=config)
    saved = await MemfoldChatMessageHistory(store, "s1").aget_messages()
    assert [m.content for m in saved] == [
        "Hi, I am Ann",
        "Hello Ann!",
        "What is my name?",
        "Your name is Ann.",
    ]
    assert without_ids(model.seen[1]) == without_ids(saved[:3])


def agent_replies() -> list[AIMessage]:
    """A first turn with parallel tool calls and an answer, then a second turn's answer."""
    calls = [
        {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-add"},
        {"name": "mul", "args": {"a": 2, "b": 3}, "id": "call-mul"},
    ]
    return [
        AIMessage("", tool_calls=calls),
        AIMessage("2 + 3 = 5 and 2 * 3 = 6."),
        AIMessage("You asked about 2 and 3."),
    ]


def check_agent_thread(saved: list[BaseMessage], model: Any) -> None:
    """The two agent turns are stored with their tool calls and results, and turn two saw one."""
    assert [m.type for m in saved] == ["human", "ai", "tool", "tool", "ai", "human", "ai"]
    assert isinstance(saved[1], AIMessage)
    assert [c["id"] for c in saved[1].tool_calls] == ["call-add", "call-mul"]
    results = {m.tool_call_id: m.content for m in saved[2:4] if isinstance(m, ToolMessage)}
    assert results == {"call-add": "5", "call-mul": "6"}
    assert saved[6].content == "You asked about 2 and 3."
    assert model.seen[-1] == saved[:6]


def test_create_agent_loads_and_saves_history(
    store: BaseThreadStore, fake_model: Callable[..., Any]
) -> None:
    """A LangChain 1.x agent run from the history, with its new messages saved, keeps the thread."""
    model = fake_model(*agent_replies())
    agent = create_agent(model, tools=[add, mul])
    history = MemfoldChatMessageHistory(store, "agent-1")
    for question in ["Add and multiply 2 and 3.", "Which numbers did I ask about?"]:
        before = [*history.messages, HumanMessage(question)]
        state: Any = {"messages": before}
        result = agent.invoke(state)
        history.add_messages(result["messages"][len(before) - 1 :])
    check_agent_thread(history.messages, model)


async def test_create_agent_async_loads_and_saves_history(
    store: BaseThreadStore, fake_model: Callable[..., Any]
) -> None:
    """The same agent flow through ainvoke and the async history methods keeps the thread."""
    model = fake_model(*agent_replies())
    agent = create_agent(model, tools=[add, mul])
    history = MemfoldChatMessageHistory(store, "agent-1")
    for question in ["Add and multiply 2 and 3.", "Which numbers did I ask about?"]:
        before = [*await history.aget_messages(), HumanMessage(question)]
        state: Any = {"messages": before}
        result = await agent.ainvoke(state)
        await history.aadd_messages(result["messages"][len(before) - 1 :])
    check_agent_thread(await history.aget_messages(), model)


def test_missing_langchain_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the adapter without langchain-core installed says to install memfold[langchain]."""
    for name in [n for n in sys.modules if n.startswith("memfold.integrations.langchain")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(ImportError, match=r"pip install 'memfold\[langchain\]'"):
        importlib.import_module("memfold.integrations.langchain.chat_history")
