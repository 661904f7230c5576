"""A process killed after a tool ran, before the step's checkpoint was written, then resumed in a
new process: with `journaled` the tool's side effect happens exactly once.

The graph is a real LangGraph agent loop (a scripted model, ``ToolNode``, `MemfoldSaver`). Its
tool adds one to a counter in an SQLite table and commits. In the first process the saver, asked
to store the tools step's results (the tool's ToolMessage), signals the test through a file and
blocks until the test SIGKILLs the process: the tool completed (and, journaled, was recorded),
but neither its writes nor the step's checkpoint reached the store. Under LangGraph's default
``durability="async"`` the saver also holds back the checkpoint the tools step runs from (which
that durability stores while the tools run) until the tool has committed: the crash loses it,
and the resumed run makes the step again under new task ids.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode

from memfold.checkpoints import BaseCheckpointStore, open_checkpoint_store
from memfold.integrations.langchain import journaled
from memfold.integrations.langgraph import MemfoldSaver
from memfold.journal import EffectJournal
from tests.support import (
    PG_URL,
    REDIS_URL,
    drop_checkpoint_store,
    kill_at_marker,
    postgres_checkpoint_store,
    redis_checkpoint_store,
)

CONFIG: Any = {"configurable": {"thread_id": "order-7"}}
COPY: Any = {"configurable": {"thread_id": "order-7-copy"}}
"""The thread `copy_thread` makes of ``order-7`` after the crash (when a test asks for it)."""
SETTINGS: dict[str, Any] = {}
"""Set in each child process: the counter database, the marker file, whether to block."""


@tool
def increment() -> str:
    """Add one to the counter."""
    with sqlite3.connect(SETTINGS["counter"]) as db:
        db.execute("UPDATE counter SET n = n + 1")
        (n,) = db.execute("SELECT n FROM counter").fetchone()
    db.close()
    return f"count={n}"


class CrashingSaver(MemfoldSaver):
    """A saver that, in the first process, blocks instead of storing anything that holds the
    tool's result: the tools task's writes, or the checkpoint after the tools step (LangGraph
    stores the two independently)."""

    def _stop_if_tool_ran(self, values: Any) -> None:
        if SETTINGS["block"] and any(isinstance(v, ToolMessage) for v in values):
            if SETTINGS["durability"] != "async":  # there the held-back put signals
                Path(SETTINGS["marker"]).write_text("the tool ran")
            time.sleep(120)  # killed here

    def _written(self, writes: Sequence[tuple[str, Any]]) -> list[Any]:
        return [v for _, value in writes for v in (value if isinstance(value, list) else [value])]

    def _holds_back(self, checkpoint: Any) -> bool:
        """Whether ``checkpoint`` is the one the tools step runs from, to be lost in the crash
        (only under ``durability="async"``, which stores it while the tools run)."""
        messages = checkpoint["channel_values"].get("messages", [])
        calls = bool(messages) and isinstance(messages[-1], AIMessage) and messages[-1].tool_calls
        return bool(SETTINGS["block"] and SETTINGS["durability"] == "async" and calls)

    def _stop_once_tool_ran(self) -> None:
        """Wait for the tool's commit, then signal and block until killed."""
        while _count(Path(SETTINGS["counter"])) == 0:
            time.sleep(0.01)
        Path(SETTINGS["marker"]).write_text("the tool ran")
        time.sleep(120)  # killed here

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self._holds_back(checkpoint):
            self._stop_once_tool_ran()
        self._stop_if_tool_ran(checkpoint["channel_values"].get("messages", []))
        return super().put(config, checkpoint, metadata, new_versions)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self._holds_back(checkpoint):
            await asyncio.to_thread(self._stop_once_tool_ran)  # the tools run meanwhile
        await asyncio.to_thread(
            self._stop_if_tool_ran, checkpoint["channel_values"].get("messages", [])
        )
        return await super().aput(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._stop_if_tool_ran(self._written(writes))
        super().put_writes(config, writes, task_id, task_path)

    async def aput_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self._stop_if_tool_ran, self._written(writes))  # loop runs on
        await super().aput_writes(config, writes, task_id, task_path)


def model(state: MessagesState) -> dict[str, list[AnyMessage]]:
    """A scripted model: call the tool once, then answer with its result."""
    results = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    if not results:
        call = {"name": "increment", "args": {}, "id": "call-1", "type": "tool_call"}
        return {"messages": [AIMessage("", tool_calls=[call])]}
    return {"messages": [AIMessage(f"done: {results[-1].content}")]}


def build(saver: MemfoldSaver, use_journal: bool) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The agent loop, with the tool journaled in the saver's store or not."""
    tools: list[BaseTool] = [increment]
    if use_journal:
        tools = [journaled(increment, EffectJournal(saver.store))]
    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges(
        "model", lambda s: "tools" if s["messages"][-1].tool_calls else END, ["tools", END]
    )
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=saver)


def child(
    url: str, options: dict[str, Any], settings: dict[str, Any], use_async: bool, results: Any
) -> None:
    """Run the graph (first process: from the start; later: resume each thread of
    ``settings["configs"]``) and report each answer."""
    SETTINGS.update(settings)
    store = open_checkpoint_store(url, setup=False, **options)
    graph = build(CrashingSaver(store), settings["journal"])
    start = None if settings["resume"] else {"messages": [HumanMessage("refund order 7")]}
    durability = settings["durability"]
    for config in settings["configs"]:
        if use_async:
            state = asyncio.run(graph.ainvoke(start, config, durability=durability))
        else:
            state = graph.invoke(start, config, durability=durability)
        results.put(state["messages"][-1].content)
    store.close()


@pytest.fixture(params=["sqlite-sync", "postgresql-async", "redis-async"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A checkpoint store URL and options that the processes of one run share (each backend
    once: SQLite driven by invoke, PostgreSQL and Redis by ainvoke)."""
    store: BaseCheckpointStore
    if request.param == "sqlite-sync":
        url, options = f"sqlite:///{tmp_path / 'checkpoints.db'}", {}
        store = open_checkpoint_store(url)
    elif request.param == "redis-async":
        store = redis_checkpoint_store()
        url, options = REDIS_URL, {"key_prefix": store.key_prefix}  # type: ignore[attr-defined]
    else:
        store = postgres_checkpoint_store()
        url, options = PG_URL, {"schema": store.tables.schema}  # type: ignore[attr-defined]
    try:
        yield url, options
    finally:
        store.close()
        drop_checkpoint_store(store)


def crash_then_resume(
    url: str,
    options: dict[str, Any],
    tmp_path: Path,
    *,
    use_journal: bool,
    use_async: bool,
    copy: bool = False,
    durability: str = "sync",
) -> tuple[int, list[str]]:
    """Run the graph in a process killed right after the tool committed, resume it in a second
    process (with ``copy``, also a `copy_thread` of it made after the crash), both with
    ``durability``; returns the counter and the resumed runs' answers."""
    counter, marker = tmp_path / "counter.db", tmp_path / "tool-ran"
    with sqlite3.connect(counter) as db:
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (0)")
    db.close()
    settings = {
        "counter": str(counter),
        "marker": str(marker),
        "journal": use_journal,
        "durability": durability,
    }
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()

    first = ctx.Process(
        target=child,
        args=(
            url,
            options,
            {**settings, "block": True, "resume": False, "configs": [CONFIG]},
            use_async,
            results,
        ),
    )
    first.start()
    kill_at_marker(first, marker, "its tool ran")

    # The kill came between the tool's commit and the tools step's checkpoint.
    store = open_checkpoint_store(url, setup=False, **options)
    try:
        graph = build(MemfoldSaver(store), use_journal)
        state = graph.get_state(CONFIG)
        if durability == "async":  # lost: step 1's checkpoint (after the model), the tools' origin
            assert state.metadata["step"] == 0
        else:
            assert (state.next, state.metadata["step"]) == (("tools",), 1)
        recorded = EffectJournal(store).list_entries("order-7")
        assert [e.tool_call_id for e in recorded] == (["call-1"] if use_journal else [])
        if copy:
            assert store.copy_thread("order-7", "order-7-copy") > 0
    finally:
        store.close()
    assert _count(counter) == 1

    configs = [CONFIG, COPY] if copy else [CONFIG]
    second = ctx.Process(
        target=child,
        args=(
            url,
            options,
            {**settings, "block": False, "resume": True, "configs": configs},
            use_async,
            results,
        ),
    )
    second.start()
    answers = [results.get(timeout=120) for _ in configs]
    second.join(30)
    assert second.exitcode == 0
    return _count(counter), answers


def _count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        (n,) = db.execute("SELECT n FROM counter").fetchone()
    db.close()
    return int(n)


def test_a_resumed_run_replays_the_journaled_call(
    shared: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Killed after the tool committed and resumed in a new process, the run and a copy of its
    thread (`copy_thread` carries the journal) both complete with the recorded result, and the
    counter was incremented exactly once."""
    url, options = shared
    use_async = not url.startswith("sqlite")
    count, answers = crash_then_resume(
        url, options, tmp_path, use_journal=True, use_async=use_async, copy=True
    )
    assert count == 1
    assert answers == ["done: count=1", "done: count=1"]


def test_without_the_journal_the_resumed_run_repeats_the_side_effect(tmp_path: Path) -> None:
    """The same crash and resume with the bare tool increments the counter twice: the
    journal is what prevents it."""
    url = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    open_checkpoint_store(url).close()
    count, answers = crash_then_resume(url, {}, tmp_path, use_journal=False, use_async=False)
    assert count == 2
    assert answers == ["done: count=2"]


@pytest.mark.parametrize("use_journal", [True, False], ids=["journaled", "bare"])
def test_a_run_that_lost_the_checkpoint_its_tools_ran_from_replays_the_call(
    shared: tuple[str, dict[str, Any]], tmp_path: Path, use_journal: bool
) -> None:
    """Under LangGraph's default ``durability="async"`` the crash also loses the checkpoint the
    tools step ran from, so the resumed run makes the step again under new task ids: the
    journaled tool still runs once (the bare tool twice), on the original thread and on a copy
    made after the crash."""
    url, options = shared
    use_async = not url.startswith("sqlite")
    count, answers = crash_then_resume(
        url,
        options,
        tmp_path,
        use_journal=use_journal,
        use_async=use_async,
        copy=use_journal,
        durability="async",
    )
    expected = 1 if use_journal else 2
    assert count == expected
    assert set(answers) == {f"done: count={expected}"}
