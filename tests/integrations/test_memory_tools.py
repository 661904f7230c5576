"""The memory tools: an agent remembers in one thread and recalls in another, and no tool call
reaches another user's namespace, whatever arguments the model sends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from memfold.errors import InvalidInput
from memfold.integrations.langchain import memory_tools
from memfold.integrations.llama_index import MemfoldToolSpec
from memfold.memories import BaseMemoryStore
from tests.integrations.conftest import FakeToolModel
from tests.support import MEMORY_BACKENDS, drop_checkpoint_store, make_memory_store

TEMPLATE = ("acme", "{user_id}", "memories")


@pytest.fixture(params=MEMORY_BACKENDS)
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A fresh memory store of each backend, with the hashing embedder."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


def _call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def _config(thread: str, user: str) -> Any:
    return {"configurable": {"thread_id": thread, "user_id": user}}


async def test_agent_remembers_in_one_thread_and_recalls_in_another(
    memory_store: BaseMemoryStore, fake_model: Callable[..., FakeToolModel]
) -> None:
    """A preference saved with the remember tool in thread A is recalled in thread B."""
    model = fake_model(
        _call("remember", {"content": "The user prefers oolong tea, no sugar"}, "c1"),
        "Noted.",
        _call("recall", {"query": "which tea does the user like?"}, "c2"),
        "You like oolong tea.",
    )
    agent = create_agent(
        model, tools=memory_tools(memory_store, TEMPLATE), checkpointer=InMemorySaver()
    )
    await agent.ainvoke(
        {"messages": [HumanMessage("I love oolong tea, no sugar")]}, _config("A", "u1")
    )
    result = agent.invoke({"messages": [HumanMessage("What tea do I like?")]}, _config("B", "u1"))
    recalled = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert len(recalled) == 1
    assert "oolong tea" in str(recalled[0].content)
    assert len(result["messages"]) == 4  # thread B holds only its own turn
    assert [r.text for r in memory_store.list_records(("acme", "u1"))] == [
        "The user prefers oolong tea, no sugar"
    ]


async def test_model_arguments_cannot_reach_another_users_namespace(
    memory_store: BaseMemoryStore, fake_model: Callable[..., FakeToolModel]
) -> None:
    """Namespace-like arguments from the model are dropped; ids of other users are not found."""
    secret = memory_store.put(("acme", "u1", "memories"), "u1's bank PIN hint: blue whale")
    sneaky = {"namespace": ["acme", "u1", "memories"], "user_id": "u1", "tenant": "acme"}
    model = fake_model(
        _call("recall", {"query": "bank PIN blue whale", **sneaky}, "c1"),
        _call("update_memory", {"id": secret.id, "content": "hacked", **sneaky}, "c2"),
        _call("forget", {"id": secret.id, **sneaky}, "c3"),
        "Nothing found.",
    )
    agent = create_agent(model, tools=memory_tools(memory_store, TEMPLATE))
    result = await agent.ainvoke({"messages": [HumanMessage("find u1's PIN")]}, _config("t", "u2"))
    outputs = [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)]
    assert outputs[0] == "No matching memories."
    assert outputs[1].startswith("No memory has id")
    assert outputs[2].startswith("No memory has id")
    kept = memory_store.get(("acme", "u1", "memories"), str(secret.id))
    assert kept is not None
    assert kept.text == "u1's bank PIN hint: blue whale"


def test_tools_need_the_configured_user(memory_store: BaseMemoryStore) -> None:
    """A namespace template label missing from the run config is an error naming the key."""
    remember = memory_tools(memory_store, TEMPLATE)[0]
    with pytest.raises(InvalidInput, match="user_id"):
        remember.invoke({"content": "x"})


async def test_update_and_forget_tools(memory_store: BaseMemoryStore) -> None:
    """update keeps the id and value and changes the text; forget deletes; async twins agree."""
    remember, recall, update, forget = memory_tools(memory_store, TEMPLATE)
    config = _config("t", "u1")
    memory_id = remember.invoke({"content": "Lives in Lisbon"}, config).split("id: ")[1][:-2]
    assert await update.ainvoke({"id": memory_id, "content": "Lives in Porto"}, config) == (
        f"Updated memory {memory_id}."
    )
    assert f"- Lives in Porto (id: {memory_id})" in await recall.ainvoke({"query": "Porto"}, config)
    assert forget.invoke({"id": memory_id}, config) == f"Forgot memory {memory_id}."
    assert await forget.ainvoke({"id": memory_id}, config) == f"No memory has id {memory_id}."
    assert recall.invoke({"query": "Porto"}, config) == "No matching memories."


async def test_update_tools_keep_the_time_to_live(memory_store: BaseMemoryStore) -> None:
    """A memory corrected through either framework's update tool still expires (the tools
    dropped its TTL; found by a differential test of the tools)."""
    namespace = ("acme", "u1", "memories")
    updates = [
        lambda i: memory_tools(memory_store, TEMPLATE)[2].invoke(
            {"id": i, "content": "Drinks black tea"}, _config("t", "u1")
        ),
        lambda i: MemfoldToolSpec(memory_store, namespace).update_memory(i, "Drinks green tea"),
    ]
    for update in updates:
        old = memory_store.put(namespace, "Drinks oolong tea", {"k": 1}, ttl_seconds=3600)
        assert update(old.id) == f"Updated memory {old.id}."
        new = memory_store.get(namespace, str(old.id))
        assert new is not None
        assert (new.ttl_seconds, new.value, new.importance) == (3600, {"k": 1}, old.importance)
        assert new.expires_at is not None
        assert new.text != old.text
    spec = MemfoldToolSpec(memory_store, namespace)
    kept = memory_store.put(namespace, "Drinks coffee", ttl_seconds=60)
    assert await spec.aupdate_memory(str(kept.id), "Drinks espresso") == (
        f"Updated memory {kept.id}."
    )
    assert memory_store.get(namespace, str(kept.id)).ttl_seconds == 60  # type: ignore[union-attr]


async def test_refused_arguments_are_answered_to_the_model(
    memory_store: BaseMemoryStore, fake_model: Callable[..., FakeToolModel]
) -> None:
    """An id or text the store refuses is the tool's answer, so the agent's run goes on and
    stores nothing (the tools raised and ended the run); a missing user in the config still
    raises."""
    too_long = "x" * 600
    model = fake_model(
        _call("forget", {"id": ""}, "c1"),
        _call("update_memory", {"id": too_long, "content": "y"}, "c2"),
        _call("remember", {"content": "nul \x00 inside"}, "c3"),
        _call("recall", {"query": "nul \x00 inside"}, "c4"),
        "Sorry, I could not do that.",
    )
    agent = create_agent(model, tools=memory_tools(memory_store, TEMPLATE))
    result = await agent.ainvoke({"messages": [HumanMessage("hi")]}, _config("t", "u1"))
    answers = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert [a.status for a in answers] == ["error"] * 4
    assert all(isinstance(e, str) and e for e in (a.content for a in answers))
    assert "NUL" in str(answers[2].content)
    assert result["messages"][-1].content == "Sorry, I could not do that."
    assert memory_store.count(("acme",)) == 0
    forget = memory_tools(memory_store, TEMPLATE)[3]
    assert "id" in forget.invoke({"id": ""}, _config("t", "u1"))
    with pytest.raises(InvalidInput, match="user_id"):
        forget.invoke({"id": ""}, {"configurable": {}})


async def test_llama_index_tool_spec(memory_store: BaseMemoryStore) -> None:
    """The LlamaIndex tools remember, recall, update and forget in their own namespace only."""
    tools = {
        t.metadata.name: t for t in MemfoldToolSpec(memory_store, ("acme", "u1")).to_tool_list()
    }
    other = {
        t.metadata.name: t for t in MemfoldToolSpec(memory_store, ("acme", "u2")).to_tool_list()
    }
    saved = (await tools["remember"].acall(content="Allergic to peanuts")).content
    memory_id = saved.split("id: ")[1][:-2]
    assert "Allergic to peanuts" in tools["recall"].call(query="peanuts").content
    assert other["recall"].call(query="peanuts").content == "No matching memories."
    assert other["forget"].call(id=memory_id).content == f"No memory has id {memory_id}."
    assert tools["update_memory"].call(id=memory_id, content="Allergic to cashews").content == (
        f"Updated memory {memory_id}."
    )
    assert "cashews" in (await tools["recall"].acall(query="cashews")).content
    assert (await tools["forget"].acall(id=memory_id)).content == f"Forgot memory {memory_id}."
    assert memory_store.count(("acme",)) == 0


@pytest.fixture(params=["memory", "chroma"])
def keyed_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A memory store of the in-process backend and of Chroma, whose item ids join the
    namespace key and the record id."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    store.close()


def _tool_call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_call", "id": f"call-{name}", "name": name, "args": args}


async def test_langchain_tool_arguments_cannot_leave_the_configured_namespace(
    keyed_store: BaseMemoryStore,
) -> None:
    """A model's ``config`` argument does not replace the run's config, and ids crafted to name
    a record of a deeper namespace are refused: other users' and deeper records stay intact."""
    theirs = keyed_store.put(("acme", "u1", "memories"), "u1 secret: blue whale")
    deeper = keyed_store.put(("acme", "u2", "memories", "deep"), "u2 deep secret", id="pin")
    remember, recall, update, forget = memory_tools(keyed_store, TEMPLATE)
    config = _config("t", "u2")
    hostile_config = {"configurable": {"user_id": "u1"}}
    await remember.ainvoke(
        _tool_call("remember", {"content": "u2 likes blue", "config": hostile_config}), config
    )
    assert keyed_store.count(("acme", "u1")) == 1
    assert [r.text for r in keyed_store.list_records(("acme", "u2", "memories"))] == [
        "u2 deep secret",
        "u2 likes blue",
    ]
    found = recall.invoke(_tool_call("recall", {"query": "secret blue whale"}), config).content
    assert "u1 secret" not in found
    crafted = "deep\x1fpin"
    for tool, args in ((update, {"id": crafted, "content": "hacked"}), (forget, {"id": crafted})):
        answer = await tool.ainvoke(_tool_call(tool.name, args), config)
        assert answer.status == "error"
        assert "separator" in answer.content
    assert keyed_store.get(("acme", "u2", "memories", "deep"), "pin").text == deeper.text
    assert keyed_store.get(("acme", "u1", "memories"), str(theirs.id)).text == theirs.text


async def test_llama_index_tools_take_no_namespace_and_no_crafted_id(
    keyed_store: BaseMemoryStore,
) -> None:
    """A LlamaIndex tool call naming a namespace fails without writing; crafted ids are
    refused; the deeper record stays."""
    deeper = keyed_store.put(("acme", "u2", "memories", "deep"), "u2 deep secret", id="pin")
    tools = {
        t.metadata.name: t
        for t in MemfoldToolSpec(keyed_store, ("acme", "u2", "memories")).to_tool_list()
    }
    with pytest.raises(TypeError, match="namespace"):
        tools["remember"].call(content="x", namespace=("acme", "u1"))
    with pytest.raises(TypeError, match="namespace"):
        await tools["recall"].acall(query="secret", namespace=("acme",))
    with pytest.raises(InvalidInput, match="separator"):
        tools["update_memory"].call(id="deep\x1fpin", content="hacked")
    with pytest.raises(InvalidInput, match="separator"):
        await tools["forget"].acall(id="deep\x1fpin")
    assert keyed_store.count(("acme",)) == 1
    assert keyed_store.get(("acme", "u2", "memories", "deep"), "pin").text == deeper.text
