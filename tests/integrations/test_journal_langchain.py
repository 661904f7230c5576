"""`journaled` LangChain tools: each tool call of a thread runs once, sync and async."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from memfold import InvalidInput
from memfold.integrations.langchain import JournaledTool, journaled
from memfold.integrations.langgraph import MemfoldSaver
from memfold.journal import EffectJournal, open_journal
from memfold.model import JSON

CALLS: list[str] = []
JOURNALS: list[EffectJournal] = []


@tool
def refund(order: str, amount: int) -> str:
    """Refund part of an order; the result says how many times this order was refunded."""
    CALLS.append(order)
    return f"refunded {amount} on {order} (#{CALLS.count(order)})"


@tool
def set_status(status: str) -> Command[Any]:
    """Set the conversation status."""
    CALLS.append(status)
    return Command(update={"messages": []}, goto="next")


def call(call_id: str = "call-1", **args: Any) -> dict[str, Any]:
    """A ToolCall of ``refund``."""
    return {"name": "refund", "args": args or {"order": "A1", "amount": 5}, "id": call_id,
            "type": "tool_call"}  # fmt: skip


def config(thread_id: str = "t1", namespace: str = "tools:abc") -> Any:
    """A run config as LangGraph passes it to a tool."""
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace}}


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    """A journal in an SQLite checkpoint store, and a fresh call log."""
    CALLS.clear()
    found = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield found
    found.close()


@pytest.fixture(params=["sync", "async"])
def invoke(request: pytest.FixtureRequest) -> Any:
    """``tool.invoke`` or ``await tool.ainvoke``, behind one awaitable."""

    async def run(target: JournaledTool, *args: Any) -> Any:
        if request.param == "async":
            return await target.ainvoke(*args)
        return target.invoke(*args)

    return run


async def test_a_recorded_call_is_replayed_without_running(
    journal: EffectJournal, invoke: Any
) -> None:
    """Invoked again, one tool call returns the recorded ToolMessage; the tool ran once."""
    safe = journaled(refund, journal)
    first = await invoke(safe, call(), config())
    again = await invoke(safe, call(), config())
    assert isinstance(again, ToolMessage)
    assert (again.content, again.tool_call_id, again.name) == (first.content, "call-1", "refund")
    assert CALLS == ["A1"]
    [entry] = journal.list_entries("t1")
    assert (entry.namespace, entry.tool_call_id) == ("tools:abc", "call-1")


async def test_the_key_is_thread_namespace_and_call_id(journal: EffectJournal, invoke: Any) -> None:
    """Another call id, thread, namespace or tenant runs the tool again."""
    safe = journaled(refund, journal)
    await invoke(safe, call(), config())
    await invoke(safe, call("call-2"), config())
    await invoke(safe, call(), config(thread_id="t2"))
    await invoke(safe, call(), config(namespace="tools:def"))
    await invoke(journaled(refund, journal, tenant="acme"), call(), config())
    assert len(CALLS) == 5


async def test_a_call_recorded_by_another_worker_wins(journal: EffectJournal, invoke: Any) -> None:
    """A result another process recorded for the call is what the tool returns."""
    other: JSON = {
        "message": {"role": "tool", "content": "done elsewhere", "tool_call_id": "call-1"}
    }
    journal.record("t1", "call-1", other, namespace="tools:abc")
    result = await invoke(journaled(refund, journal), call(), config())
    assert (result.content, CALLS) == ("done elsewhere", [])


async def test_a_command_output_is_replayed(journal: EffectJournal, invoke: Any) -> None:
    """A tool returning a LangGraph Command is recorded as typed bytes and replayed as one."""
    safe = journaled(set_status, journal)
    status = {"name": "set_status", "args": {"status": "paid"}, "id": "c9", "type": "tool_call"}
    first = await invoke(safe, status, config())
    again = await invoke(safe, status, config())
    assert isinstance(again, Command)
    assert (again.goto, again.update) == (first.goto, first.update)
    assert CALLS == ["paid"]
    assert journal.get("t1", "c9", namespace="tools:abc").value.tag == "msgpack"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool_input", "run_config", "match"),
    [
        ({"order": "A1", "amount": 5}, config(), "ToolCall"),
        (call(), {"configurable": {}}, "thread_id"),
        (call(), None, "thread_id"),
    ],
)
async def test_a_call_that_cannot_be_keyed_is_refused(
    journal: EffectJournal, invoke: Any, tool_input: Any, run_config: Any, match: str
) -> None:
    """Without a ToolCall id or a thread the call is refused before the tool runs."""
    with pytest.raises(InvalidInput, match=match):
        await invoke(journaled(refund, journal), tool_input, run_config)
    assert CALLS == []


def test_the_wrapper_looks_like_the_tool(journal: EffectJournal) -> None:
    """Name, description and the schema a model binds are the tool's; run() is refused."""
    safe = journaled(refund, journal)
    assert (safe.name, safe.description) == (refund.name, refund.description)
    schema: Any = safe.tool_call_schema
    assert schema.model_json_schema() == refund.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="invoke"):
        safe.run({"order": "A1", "amount": 5})
    with pytest.raises(InvalidInput, match="BaseTool"):
        journaled(lambda: 1, journal)  # type: ignore[arg-type]


@tool
def flaky(note: str) -> str:
    """Fail on the first call (once the other call of the step is recorded), then succeed."""
    CALLS.append(note)
    if CALLS.count(note) == 1:
        deadline = time.monotonic() + 30
        while not JOURNALS[0].list_entries("run-1") and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("the first attempt fails")
    return "ok"


def test_a_retried_graph_step_replays_the_completed_call(tmp_path: Path) -> None:
    """In a LangGraph run, a tools step whose second call fails is retried from the same
    checkpoint: the first call, already recorded under the run's thread and the tool task's
    namespace, is replayed, not run again."""
    CALLS.clear()
    run: Any = {"configurable": {"thread_id": "run-1"}}
    with MemfoldSaver.from_url(f"sqlite:///{tmp_path / 'run.db'}") as saver:
        journal = EffectJournal(saver.store)
        JOURNALS[:] = [journal]
        tools = [journaled(refund, journal), journaled(flaky, journal)]
        builder = StateGraph(MessagesState)
        builder.add_node("tools", ToolNode(tools, handle_tool_errors=False))
        builder.add_edge(START, "tools")
        graph: Any = builder.compile(checkpointer=saver)
        ask = AIMessage("", tool_calls=[
            {"name": "refund", "args": {"order": "B2", "amount": 3}, "id": "call-7"},
            {"name": "flaky", "args": {"note": "n"}, "id": "call-8"},
        ])  # fmt: skip
        with pytest.raises(RuntimeError, match="first attempt"):
            graph.invoke({"messages": [ask]}, run, durability="sync")
        [entry] = journal.list_entries("run-1")
        assert (entry.tool_call_id, entry.namespace.split(":")[0]) == ("call-7", "tools")
        done = graph.invoke(None, run, durability="sync")
    assert sorted(CALLS) == ["B2", "n", "n"]  # the calls run concurrently
    assert [m.content for m in done["messages"][1:]] == ["refunded 3 on B2 (#1)", "ok"]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_a_later_turn_that_reuses_a_call_id_runs_the_tool(tmp_path: Path, durability: str) -> None:
    """A finished run's call is no crashed attempt: a later turn whose model reuses the call id
    (a scripted or cached model) runs the tool again, whatever the durability (with "exit",
    which stores no step's checkpoint, the finished run's entry was replayed)."""
    CALLS.clear()
    with MemfoldSaver.from_url(f"sqlite:///{tmp_path / 'run.db'}") as saver:
        builder = StateGraph(MessagesState)
        builder.add_node("tools", ToolNode([journaled(refund, EffectJournal(saver.store))]))
        builder.add_edge(START, "tools")
        graph: Any = builder.compile(checkpointer=saver)
        turn: Any = {"messages": [AIMessage("", tool_calls=[call("call-9")])]}
        for _ in range(2):
            graph.invoke(turn, {"configurable": {"thread_id": "w"}}, durability=durability)
    assert CALLS == ["A1", "A1"]
