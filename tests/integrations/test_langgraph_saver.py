"""MemfoldSaver under real LangGraph graphs, sync and async: resume, history, time travel, forks,
interrupts, growth that follows new messages, and one writer per thread."""

from __future__ import annotations

import asyncio
import operator
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict, cast

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import _messages_delta_reducer, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Send, interrupt
from sqlalchemy import select

from memfold import Conflict, InvalidInput
from memfold.backends.sql.checkpoint_rows import id_text
from memfold.checkpoint_deltas import ITEMS_TAG
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    DeltaPolicy,
    RetentionPolicy,
    SequenceBlob,
    open_checkpoint_store,
)
from memfold.integrations.langgraph import MemfoldSaver
from tests.backends.test_checkpoints import CHECKPOINT_BACKENDS, make_checkpoint_store
from tests.support import PG_URL, REDIS_URL, drop_checkpoint_store


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def reply(state: State) -> dict[str, Any]:
    last = state["messages"][-1]
    return {"messages": [AIMessage(f"echo: {last.content}")]}


def chat_graph(saver: MemfoldSaver, node: Any = reply) -> CompiledStateGraph[Any]:
    builder = StateGraph(State)
    builder.add_node("reply", node)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def approval_graph(saver: MemfoldSaver) -> CompiledStateGraph[Any]:
    def ask(state: State) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [AIMessage(f"approved: {answer}")]}

    builder = StateGraph(State)
    builder.add_node("reply", reply)
    builder.add_node("ask", ask)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def thread(thread_id: str = "t") -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


class Runner:
    """Drives a graph through its sync or its async API."""

    def __init__(self, use_async: bool) -> None:
        self.use_async = use_async

    async def invoke(self, graph: Any, value: Any, config: RunnableConfig, **kw: Any) -> Any:
        if self.use_async:
            return await graph.ainvoke(value, config, **kw)
        return graph.invoke(value, config, **kw)

    async def state(self, graph: Any, config: RunnableConfig) -> Any:
        return await graph.aget_state(config) if self.use_async else graph.get_state(config)

    async def history(self, graph: Any, config: RunnableConfig) -> list[Any]:
        if self.use_async:
            return [s async for s in graph.aget_state_history(config)]
        return list(graph.get_state_history(config))

    async def update(self, graph: Any, config: RunnableConfig, values: Any) -> RunnableConfig:
        if self.use_async:
            return await graph.aupdate_state(config, values)  # type: ignore[no-any-return]
        return graph.update_state(config, values)  # type: ignore[no-any-return]


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    """The graph API under test: invoke/get_state or their async twins."""
    return Runner(request.param == "async")


@pytest.fixture
def cstore() -> Iterator[BaseCheckpointStore]:
    """A fresh memory checkpoint store shared by the savers of one test."""
    store = open_checkpoint_store("memory://")
    yield store
    store.close()


def texts(state: Any) -> list[str]:
    return [m.content for m in state.values["messages"]]


async def chat(run: Runner, graph: Any, turns: int, config: RunnableConfig | None = None) -> None:
    for i in range(turns):
        await run.invoke(graph, {"messages": [HumanMessage(f"hi {i}")]}, config or thread())


class DeltaState(TypedDict):
    messages: Annotated[list[Any], DeltaChannel(_messages_delta_reducer, snapshot_frequency=3)]


DELTA_BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


@contextmanager
def saver_on(backend: str, tmp_path: Path) -> Iterator[MemfoldSaver]:
    """A saver on a fresh checkpoint store of ``backend``, dropped afterwards."""
    store = make_checkpoint_store(backend, tmp_path)
    try:
        yield MemfoldSaver(store)
    finally:
        store.close()
        drop_checkpoint_store(store)


def delta_chat_graph(saver: MemfoldSaver) -> CompiledStateGraph[Any]:
    """`chat_graph` with LangGraph's delta channel for messages (a stored value every 3
    updates; between them, the channel is rebuilt from the writes since)."""

    def delta_reply(state: DeltaState) -> dict[str, Any]:
        return reply(cast(State, state))

    builder = StateGraph(DeltaState)
    builder.add_node("reply", delta_reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


# Resume, state and history.


async def test_a_thread_resumes_across_savers(run: Runner, cstore: BaseCheckpointStore) -> None:
    """A conversation continues where it stopped, even from a new saver on the same store."""
    await chat(run, chat_graph(MemfoldSaver(cstore)), 2)
    later = chat_graph(MemfoldSaver(cstore))
    await run.invoke(later, {"messages": [HumanMessage("again")]}, thread())
    assert texts(await run.state(later, thread())) == [
        "hi 0", "echo: hi 0", "hi 1", "echo: hi 1", "again", "echo: again",
    ]  # fmt: skip


async def test_history_holds_every_step_and_each_reads_exactly(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """get_state_history lists every checkpoint newest first, and each one's messages are
    exactly the prefix of the conversation at that step."""
    graph = chat_graph(MemfoldSaver(cstore))
    await chat(run, graph, 20)
    final = texts(await run.state(graph, thread()))
    history = await run.history(graph, thread())
    assert len(history) == 3 * 20
    steps = [s.metadata["step"] for s in history]
    assert steps == sorted(steps, reverse=True)
    for snapshot in history:
        got = texts(snapshot) if "messages" in snapshot.values else []
        assert got == final[: len(got)]
    assert [len(texts(s)) for s in history[:3]] == [40, 39, 38]


async def test_time_travel_and_forks_leave_the_original_branch_intact(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """Invoking from an older checkpoint, or updating one, starts a branch; the original
    branch's checkpoints still read their own messages."""
    graph = chat_graph(MemfoldSaver(cstore))
    await chat(run, graph, 3)
    history = await run.history(graph, thread())
    after_first = next(s for s in history if len(s.values.get("messages", [])) == 2)
    await run.invoke(graph, {"messages": [HumanMessage("branch")]}, after_first.config)
    assert texts(await run.state(graph, thread())) == ["hi 0", "echo: hi 0", "branch",
                                                       "echo: branch"]  # fmt: skip
    fork = await run.update(graph, after_first.config, {"messages": [AIMessage("edited")]})
    assert texts(await run.state(graph, fork)) == ["hi 0", "echo: hi 0", "edited"]
    await run.invoke(graph, {"messages": [HumanMessage("on fork")]}, fork)
    assert texts(await run.state(graph, thread()))[-2:] == ["on fork", "echo: on fork"]
    for snapshot in history:  # the first branch, read again after both forks
        again = await run.state(graph, snapshot.config)
        assert again.values == snapshot.values


@pytest.mark.parametrize("backend", DELTA_BACKENDS)
async def test_delta_channel_history_matches_langgraphs_own_walk(
    run: Runner, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a delta channel, the saver's paged history gives exactly what LangGraph's
    default one-checkpoint-at-a-time walk gives, for every checkpoint of a forked thread, in
    fewer store reads, and the graph reads each branch's messages back."""
    with saver_on(backend, tmp_path) as saver:
        graph = delta_chat_graph(saver)
        await chat(run, graph, 4)
        history = await run.history(graph, thread())
        after_first = next(s for s in history if len(s.values.get("messages", [])) == 2)
        await run.invoke(graph, {"messages": [HumanMessage("branch")]}, after_first.config)
        assert texts(await run.state(graph, thread())) == [
            "hi 0", "echo: hi 0", "branch", "echo: branch",
        ]  # fmt: skip
        every = await run.history(graph, thread())
        assert len(every) > len(history)
        seeded = replayed = False
        for snapshot in every:
            config, channels = snapshot.config, ["messages", "absent"]
            walked = BaseCheckpointSaver.get_delta_channel_history(
                saver, config=config, channels=channels
            )
            assert saver.get_delta_channel_history(config=config, channels=channels) == walked
            paged = await saver.aget_delta_channel_history(config=config, channels=channels)
            assert paged == walked
            seeded |= "seed" in walked["messages"]
            replayed |= len(walked["messages"]["writes"]) >= 2
        assert seeded  # some walks ended at a stored value,
        assert replayed  # and some replayed several writes
        reads: list[str] = []
        for name in ("get", "list_checkpoints", "read_channel_history"):
            monkeypatch.setattr(saver.store, name, _counting(getattr(saver.store, name), reads))
        BaseCheckpointSaver.get_delta_channel_history(saver, config=thread(), channels=["messages"])
        walk_reads = len(reads)
        reads.clear()
        saver.get_delta_channel_history(config=thread(), channels=["messages"])
        assert reads == ["read_channel_history"]  # one store operation
        assert walk_reads > 1


@pytest.mark.parametrize("backend", DELTA_BACKENDS)
async def test_a_sweep_leaves_delta_channel_threads_reading_the_same(
    run: Runner, backend: str, tmp_path: Path
) -> None:
    """Retention keeps what LangGraph's delta channel rebuilds each kept checkpoint from: after
    a keep-last-2 sweep, the thread and every checkpoint left read as before, fewer remain,
    and the conversation goes on."""
    with saver_on(backend, tmp_path) as saver:
        graph = delta_chat_graph(saver)
        await chat(run, graph, 7)  # the newest checkpoint is 3 supersteps past a stored value
        before = {s.config["configurable"]["checkpoint_id"]: s.values
                  for s in await run.history(graph, thread())}  # fmt: skip
        result = saver.store.sweep(RetentionPolicy(keep_last=2))
        assert 0 < result.checkpoints < len(before) - 2
        left = await run.history(graph, thread())
        assert len(left) == len(before) - result.checkpoints
        for snapshot in left:
            assert snapshot.values == before[snapshot.config["configurable"]["checkpoint_id"]]
        await chat(run, graph, 1)
        assert texts(await run.state(graph, thread()))[-4:] == [
            "hi 6", "echo: hi 6", "hi 0", "echo: hi 0",
        ]  # fmt: skip


def _counting(read: Any, reads: list[str]) -> Any:
    """``read``, recording its name in ``reads`` at each call."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(read.__name__)
        return read(*args, **kwargs)

    return counted


async def test_keep_latest_keeps_what_a_delta_channel_is_rebuilt_from(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """prune(keep_latest) leaves a thread without delta channels its newest checkpoint, and
    one with a delta channel also the ancestors the channel is rebuilt from, so it reads the
    same; delete removes either."""
    saver = MemfoldSaver(cstore)
    delta = delta_chat_graph(saver)
    await chat(run, delta, 7, thread("delta"))  # the newest is 3 supersteps past a stored value
    await chat(run, chat_graph(saver), 2, thread("plain"))
    before = await run.state(delta, thread("delta"))
    prune = saver.aprune if run.use_async else saver.prune
    await _maybe(prune(["plain", "delta"]))
    assert len(cstore.list_checkpoints("plain")) == 1
    assert len(cstore.list_checkpoints("delta")) == 1 + 3
    assert (await run.state(delta, thread("delta"))).values == before.values
    await _maybe(prune(["delta"], strategy="delete"))
    assert cstore.list_checkpoints("delta") == []


async def _maybe(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def test_an_interrupted_run_resumes_in_a_new_saver(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """A run waiting for approval keeps its interrupt in pending writes, and a new saver (a new
    process) resumes it with Command(resume=...)."""
    first = approval_graph(MemfoldSaver(cstore))
    await run.invoke(first, {"messages": [HumanMessage("refund me")]}, thread())
    waiting = await run.state(first, thread())
    assert waiting.next == ("ask",)
    assert [i.value for t in waiting.tasks for i in t.interrupts] == ["approve?"]
    second = approval_graph(MemfoldSaver(cstore))
    await run.invoke(second, Command(resume="yes"), thread())
    done = await run.state(second, thread())
    assert texts(done) == ["refund me", "echo: refund me", "approved: yes"]
    assert done.next == ()


# Growth that follows new content.


async def test_bytes_per_turn_stay_flat_as_the_thread_grows(run: Runner) -> None:
    """Over 100 turns (200 messages) the bytes a turn adds stay about constant, and the message
    channel costs under 2x the messages' own bytes; re-storing the whole list every step (the
    peers' layout) costs over 30x."""

    async def grow(policy: DeltaPolicy) -> tuple[list[int], int, int]:
        store = open_checkpoint_store("memory://", delta_policy=policy)
        saver = MemfoldSaver(store)
        graph = chat_graph(saver)
        totals = []
        for i in range(100):
            text = f"message {i} " + "lorem ipsum " * 10
            await run.invoke(graph, {"messages": [HumanMessage(text)]}, thread())
            totals.append(store.stats("t").total_bytes)
        final = (await run.state(graph, thread())).values["messages"]
        floor = sum(len(saver.serde.dumps_typed(m)[1]) for m in final)
        return totals, store.stats("t").value_bytes, floor

    totals, values, floor = await grow(DeltaPolicy())
    per_turn_first, per_turn_last = totals[49] / 50, (totals[99] - totals[49]) / 50
    assert per_turn_last < 1.3 * per_turn_first
    assert values < 2 * floor + 100 * 300  # messages under 2x, plus the small input channel
    whole, whole_values, _ = await grow(DeltaPolicy(1, 0.0))
    assert whole_values > 30 * floor
    assert whole[-1] > 10 * totals[-1]


async def test_every_checkpoint_of_a_long_thread_rebuilds_its_messages(
    cstore: BaseCheckpointStore,
) -> None:
    """Reading any checkpoint of a 200-message thread returns exactly the messages it had."""
    saver = MemfoldSaver(cstore)
    graph = chat_graph(saver)
    for i in range(100):
        graph.invoke({"messages": [HumanMessage(f"m{i}")]}, thread())
    final = graph.get_state(thread()).values["messages"]
    for stored in saver.list(thread()):
        messages = stored.checkpoint["channel_values"].get("messages", [])
        assert messages == final[: len(messages)]
    assert len(list(saver.list(thread()))) == 300


# One writer per thread.


async def test_a_second_saver_cannot_fork_while_the_first_holds_the_thread(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """Time travel by another writer while the lease is live raises Conflict; the lease holder
    itself may time travel."""
    owner = chat_graph(MemfoldSaver(cstore))
    await chat(run, owner, 2)
    oldest = (await run.history(owner, thread()))[-1].config
    intruder = chat_graph(MemfoldSaver(cstore))
    with pytest.raises(Conflict):
        await run.invoke(intruder, {"messages": [HumanMessage("fork")]}, oldest)
    await run.invoke(owner, {"messages": [HumanMessage("own fork")]}, oldest)
    assert texts(await run.state(owner, thread())) == ["own fork", "echo: own fork"]


async def test_two_live_writers_never_both_extend_a_thread(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """If B runs the thread while A is mid-run, B continues from A's newest checkpoint and A's
    next write is refused with Conflict, so the thread stays one line of history."""
    b_graph = chat_graph(MemfoldSaver(cstore))

    def a_node(state: State) -> dict[str, Any]:
        b_graph.invoke({"messages": [HumanMessage("from B")]}, thread())  # B: another process
        return {"messages": [AIMessage("from A")]}

    a_graph = chat_graph(MemfoldSaver(cstore), a_node)
    await chat(run, chat_graph(MemfoldSaver(cstore)), 1)
    with pytest.raises(Conflict):  # durability="sync": A's step is stored before B reads
        await run.invoke(
            a_graph, {"messages": [HumanMessage("A starts")]}, thread(), durability="sync"
        )
    assert texts(await run.state(b_graph, thread())) == [
        "hi 0", "echo: hi 0", "A starts", "from B", "echo: from B",
    ]  # fmt: skip
    history = await run.history(b_graph, thread())
    parents = [s.parent_config["configurable"]["checkpoint_id"] for s in history[:-1]]
    assert parents == [s.config["configurable"]["checkpoint_id"] for s in history[1:]]


async def test_strict_leases_refuse_even_a_hand_over(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """With handover=False a second saver is refused while the first's lease is live."""
    await chat(run, chat_graph(MemfoldSaver(cstore, handover=False)), 1)
    late = chat_graph(MemfoldSaver(cstore, handover=False))
    with pytest.raises(Conflict):
        await chat(run, late, 1)


async def test_an_expired_or_released_lease_lets_another_saver_fork(
    run: Runner, cstore: BaseCheckpointStore
) -> None:
    """Once the holder's lease runs out (lease_seconds) or is released, anyone may fork."""
    holder = MemfoldSaver(cstore, lease_seconds=0.2)
    await chat(run, chat_graph(holder), 2)
    oldest = (await run.history(chat_graph(holder), thread()))[-1].config
    other = MemfoldSaver(cstore, lease_seconds=60)
    await asyncio.sleep(0.3)
    await run.invoke(chat_graph(other), {"messages": [HumanMessage("fork")]}, oldest)
    assert other.release("t")
    assert not holder.release("t")
    await run.invoke(chat_graph(holder), {"messages": [HumanMessage("again")]}, oldest)


class LogState(TypedDict):
    log: Annotated[list[str], operator.add]


def subgraph_graph(saver: MemfoldSaver) -> CompiledStateGraph[Any]:
    """a -> sub (x -> inner (z) -> y) -> end, paused before ``sub``."""

    def step(name: str) -> Any:
        return lambda state: {"log": [name]}

    inner = StateGraph(LogState)
    inner.add_node("z", step("z"))
    inner.add_edge(START, "z")
    sub = StateGraph(LogState)
    sub.add_node("x", step("x"))
    sub.add_node("inner", inner.compile())
    sub.add_node("y", step("y"))
    sub.add_edge(START, "x")
    sub.add_edge("x", "inner")
    sub.add_edge("inner", "y")
    builder = StateGraph(LogState)
    builder.add_node("a", step("a"))
    builder.add_node("sub", sub.compile())
    builder.add_edge(START, "a")
    builder.add_edge("a", "sub")
    builder.add_edge("sub", END)
    return builder.compile(checkpointer=saver, interrupt_before=["sub"])


def another_instance(store: BaseCheckpointStore, tmp_path: Path) -> BaseCheckpointStore:
    """A second store on the same database as ``store`` (another process's), or ``store``
    itself for memory."""
    from memfold.backends.tiered_checkpoints import TieredCheckpointStore

    if isinstance(store, TieredCheckpointStore):
        hot, durable = (another_instance(s, tmp_path) for s in (store.hot, store.durable))
        return TieredCheckpointStore(hot, durable)  # type: ignore[arg-type]
    if store.name == "sqlite":
        return open_checkpoint_store(f"sqlite:///{tmp_path / 'checkpoints.db'}", setup=False)
    if store.name == "postgresql":
        schema = store.tables.schema  # type: ignore[attr-defined]
        return open_checkpoint_store(PG_URL, setup=False, schema=schema)
    if store.name == "redis":
        return open_checkpoint_store(REDIS_URL, key_prefix=store.key_prefix)  # type: ignore[attr-defined]
    return store


class SlowRootSaver(MemfoldSaver):
    """A saver whose puts of the root graph's checkpoints take a while (a slow database)."""

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if not config["configurable"].get("checkpoint_ns"):
            time.sleep(0.2)
        return super().put(config, checkpoint, metadata, new_versions)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if not config["configurable"].get("checkpoint_ns"):
            await asyncio.sleep(0.2)
        return await super().aput(config, checkpoint, metadata, new_versions)


def straight_into_a_subgraph(saver: MemfoldSaver) -> CompiledStateGraph[Any]:
    """START -> sub (x) -> END: the subgraph runs from the run's first step."""
    sub = StateGraph(LogState)
    sub.add_node("x", lambda state: {"log": ["x"]})
    sub.add_edge(START, "x")
    builder = StateGraph(LogState)
    builder.add_node("sub", sub.compile())
    builder.add_edge(START, "sub")
    return builder.compile(checkpointer=saver)


async def test_a_new_turn_from_another_saver_waits_for_its_own_root_checkpoint(
    run: Runner, tmp_path: Path
) -> None:
    """A new turn sent through another saver while the last one's lease is live takes the
    lease over with its root checkpoint; under durability="async" that put may still be on its
    way when the subgraph it runs stores its first checkpoint, which names it as origin: the
    subgraph's put waits for it instead of failing with Conflict (seen by fuzzing)."""
    url = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    first_store, second_store = open_checkpoint_store(url), open_checkpoint_store(url)
    try:
        first = straight_into_a_subgraph(MemfoldSaver(first_store))
        await run.invoke(first, {"log": ["1"]}, thread())
        stale = (await run.state(first, thread())).config
        second = straight_into_a_subgraph(SlowRootSaver(second_store))
        done = await run.invoke(second, {"log": ["2"]}, thread())
        assert done["log"][-2:] == ["2", "x"]
        with pytest.raises(Conflict):  # the lease was taken over: no fork from the old head
            await run.invoke(first, {"log": ["3"]}, stale, durability="sync")
    finally:
        second_store.close()
        first_store.close()


@pytest.mark.parametrize("backend", CHECKPOINT_BACKENDS)
async def test_a_paused_run_resumes_into_a_subgraph_from_another_store(
    run: Runner, backend: str, tmp_path: Path
) -> None:
    """A run paused before a subgraph resumes from another process (a second store on the
    same database, another saver) while the first saver's lease is live: the subgraph's first
    checkpoint starts from the thread's newest checkpoint, so it takes the lease over; the
    first saver, resuming from the now older paused checkpoint, is refused with Conflict."""
    first_store = make_checkpoint_store(backend, tmp_path)
    second_store = another_instance(first_store, tmp_path)
    try:
        first = subgraph_graph(MemfoldSaver(first_store))
        await run.invoke(first, {"log": []}, thread())
        paused = await run.state(first, thread())
        assert paused.next == ("sub",)
        second = subgraph_graph(MemfoldSaver(second_store))
        assert (await run.state(second, thread())).next == ("sub",)
        done = await run.invoke(second, None, thread())
        assert done["log"] == ["a", "a", "x", "a", "x", "z", "y"]
        assert (await run.state(second, thread())).next == ()
        with pytest.raises(Conflict):
            await run.invoke(first, None, paused.config)
        assert (await run.state(second, thread())).values == done
    finally:
        if second_store is not first_store:
            await second_store.aclose()
        await first_store.aclose()
        drop_checkpoint_store(first_store)


# The saver's own contract, beyond what the conformance suite checks.


def put_one(saver: MemfoldSaver, config: RunnableConfig, **values: Any) -> RunnableConfig:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    full: RunnableConfig = {"configurable": {"checkpoint_ns": "", **config["configurable"]}}
    return saver.put(full, checkpoint, {"source": "loop", "step": 0}, dict.fromkeys(values, 1))


async def test_the_tenant_comes_from_the_saver_never_the_run_config(run: Runner) -> None:
    """A run whose config names another tenant still reads and writes the saver's own tenant;
    on a store requiring tenants, a saver built without one is refused."""
    store = open_checkpoint_store("memory://?require_tenant=true")
    await chat(run, chat_graph(MemfoldSaver(store, tenant="victim")), 1)
    acme = chat_graph(MemfoldSaver(store, tenant="acme"))
    hostile: RunnableConfig = {"configurable": {"thread_id": "t", "tenant": "victim"}}
    assert (await run.state(acme, hostile)).values == {}
    await run.invoke(acme, {"messages": [HumanMessage("mine")]}, hostile)
    assert texts(await run.state(acme, thread())) == ["mine", "echo: mine"]
    assert len(store.list_checkpoints("t", tenant="victim")) == 3
    with pytest.raises(InvalidInput, match="require_tenant"):
        await chat(run, chat_graph(MemfoldSaver(store)), 1)
    assert [c.thread_id for c in store.list_checkpoints(tenant="victim")] == ["t"] * 3


async def test_values_keep_their_type_tags_and_never_pickle(cstore: BaseCheckpointStore) -> None:
    """None, bytes, pydantic messages, nested data, empty and mixed lists round-trip; a list of
    like items is stored item by item; tags are stored, and none is pickle."""
    saver = MemfoldSaver(cstore)
    values = {"none": None, "raw": b"\x00\xff", "msgs": [HumanMessage("x", id="1")],
              "nested": {"a": [1, 2.5, "s"]}, "empty": [], "mixed": [None, 1]}  # fmt: skip
    saved = put_one(saver, thread(), **values)
    got = saver.get_tuple(saved)
    assert got is not None
    assert got.checkpoint["channel_values"] == values
    stored = cstore.get("t")
    assert stored is not None
    assert isinstance(stored.values["msgs"], SequenceBlob)
    tags = {v.tag for v in stored.values.values()}
    assert "pickle" not in tags
    assert {"null", "bytes", "msgpack"} <= tags


@pytest.mark.parametrize("count", [2, 15, 16, 65_535, 65_536])
async def test_list_items_read_back_as_decoded_one_by_one(
    cstore: BaseCheckpointStore, count: int
) -> None:
    """A list's items, decoded together (each msgpack array header size), read back exactly as
    the serializer decodes each alone; the checkpoints of one `list` share each message."""
    saver = MemfoldSaver(cstore)
    values = [HumanMessage(f"m{i}", id=str(i)) if i % 3 else {"n": i, "k": [i]}
              for i in range(count)]  # fmt: skip
    first = put_one(saver, thread(), items=values)
    got = saver.get_tuple(first)
    assert got is not None
    assert got.checkpoint["channel_values"]["items"] == values
    put_one(saver, {"configurable": {**first["configurable"]}}, items=[*values, "last"])
    newer, older = saver.list(thread())
    assert newer.checkpoint["channel_values"]["items"] == [*values, "last"]
    shared = zip(newer.checkpoint["channel_values"]["items"],
                 older.checkpoint["channel_values"]["items"], strict=False)  # fmt: skip
    assert all(a is b for a, b in shared)


async def test_list_items_that_do_not_decode_together_are_decoded_one_by_one(
    cstore: BaseCheckpointStore,
) -> None:
    """Items that are not one msgpack value each (not as LangGraph's serializer writes them)
    read back as the serializer decodes each alone."""
    serde = JsonPlusSerializer()
    items = (b"\xc0\xc1", b"\x01")  # nil then an invalid byte, which alone is ignored
    cstore.put("t", "c1", Blob(*serde.dumps_typed({})), versions={"items": 1},
               values={"items": SequenceBlob("msgpack", items)})  # fmt: skip
    got = MemfoldSaver(cstore).get_tuple(thread())
    assert got is not None
    assert got.checkpoint["channel_values"]["items"] == [None, 1]


async def test_a_list_write_reaches_the_store_item_by_item(tmp_path: Path) -> None:
    """A pending write of messages is stored as its items (`pack_sequence`) and reads back as
    the list; on SQLite the checkpoint appending exactly those messages shares its payload."""
    store = open_checkpoint_store(f"sqlite:///{tmp_path / 'saver.db'}")
    saver = MemfoldSaver(store)
    said = [AIMessage(f"answer {i}: " + random.Random(i).randbytes(150).hex(), id=f"a{i}")
            for i in range(2)]  # fmt: skip
    first = put_one(saver, thread(), messages=[HumanMessage("where is it?", id="h")])
    saver.put_writes(first, [("messages", said)], "task-1")
    stored = store.get("t")
    assert stored is not None
    assert stored.writes[0].value.tag == ITEMS_TAG + "msgpack"
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": [HumanMessage("where is it?", id="h"), *said]}
    checkpoint["channel_versions"] = {"messages": 2}
    second = saver.put(first, checkpoint, {"source": "loop", "step": 1}, {"messages": 2})
    values = store.tables.values  # type: ignore[attr-defined]
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        links = conn.execute(select(values.c.version, values.c.link_task)).all()
    assert sorted((v, t and id_text(t)) for v, t in links) == [("1", None), ("2", "task-1")]
    got = saver.get_tuple(first)
    assert got is not None
    assert got.pending_writes == [("task-1", "messages", said)]
    latest = saver.get_tuple(second)
    assert latest is not None
    assert latest.checkpoint["channel_values"]["messages"][1:] == said
    store.close()


class XorCipher:
    """A toy cipher: enough to show the cipher name travels in the type tag."""

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return "xor", bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        assert ciphername == "xor"
        return bytes(b ^ 0x5A for b in ciphertext)


async def test_an_encrypting_serde_is_used_for_everything(cstore: BaseCheckpointStore) -> None:
    """With EncryptedSerializer every stored tag names the cipher, and the graph still works."""
    saver = MemfoldSaver(cstore, serde=EncryptedSerializer(XorCipher(), JsonPlusSerializer()))
    graph = chat_graph(saver)
    graph.invoke({"messages": [HumanMessage("secret")]}, thread())
    assert texts(graph.get_state(thread())) == ["secret", "echo: secret"]
    for stored in cstore.list_checkpoints("t"):
        assert stored.body.tag.endswith("+xor")
        assert all(v.tag.endswith("+xor") for v in stored.values.values())
        assert all(w.value.tag.endswith("+xor") for w in stored.writes)
        assert b"secret" not in stored.body.data


async def test_config_metadata_is_merged_and_filterable(cstore: BaseCheckpointStore) -> None:
    """Scalar config metadata (user_id) lands in checkpoint metadata, and list filters on it."""
    saver = MemfoldSaver(cstore)
    graph = chat_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": "t"}, "metadata": {"user_id": "ana"}}
    graph.invoke({"messages": [HumanMessage("hi")]}, config)
    graph.invoke({"messages": [HumanMessage("hi")]}, thread("other"))
    mine = list(saver.list(None, filter={"user_id": "ana"}))
    assert len(mine) == 3
    assert {t.config["configurable"]["thread_id"] for t in mine} == {"t"}
    assert len(list(saver.list(None))) == 6


async def test_pending_writes_sort_and_special_channels_replace(
    cstore: BaseCheckpointStore,
) -> None:
    """Writes come back in (task_path, task_id, idx) order; a re-sent regular write is ignored
    while a re-sent __interrupt__ replaces."""
    saver = MemfoldSaver(cstore)
    saved = put_one(saver, thread(), x=1)
    saver.put_writes(saved, [("a", 1), ("b", 2)], "task-2", "~1")
    saver.put_writes(saved, [("a", 0)], "task-1", "~0")
    saver.put_writes(saved, [("__interrupt__", "first")], "task-1", "~0")
    saver.put_writes(saved, [("a", 99), ("__interrupt__", "second")], "task-1", "~0")
    got = saver.get_tuple(saved)
    assert got is not None
    assert got.pending_writes == [
        ("task-1", "__interrupt__", "second"), ("task-1", "a", 0),
        ("task-2", "a", 1), ("task-2", "b", 2),
    ]  # fmt: skip


async def test_concurrent_writes_from_many_threads_all_land(cstore: BaseCheckpointStore) -> None:
    """put_writes from 16 threads at once (LangGraph's async durability) loses nothing."""
    saver = MemfoldSaver(cstore)
    saved = put_one(saver, thread(), x=1)

    def task(n: int) -> None:
        for i in range(20):
            saver.put_writes(saved, [("c", (n, i))], f"task-{n:02d}-{i:02d}")

    workers = [threading.Thread(target=task, args=(n,)) for n in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    got = saver.get_tuple(saved)
    assert got is not None
    assert len(got.pending_writes or []) == 16 * 20


class FanOut(TypedDict):
    results: Annotated[list[int], operator.add]


class Branch(TypedDict):
    x: int
    results: Annotated[list[int], operator.add]


def test_a_wide_fan_out_of_subgraphs_stores_every_checkpoint(tmp_path: Path) -> None:
    """24 `Send` branches, each a two-step subgraph, run at once on LangGraph's worker threads
    (sync API, SQLite): each branch's saver calls come from a thread of its own, and all land.
    The SQLite driver's pool once capped them at 15: the run stalled 30 s and lost puts."""

    def slow(state: Branch) -> dict[str, Any]:
        time.sleep(0.05)  # the branches' threads are alive together
        return {"results": [state["x"]]}

    branch = StateGraph(Branch, output_schema=FanOut)
    branch.add_node("first", lambda state: {"results": []})
    branch.add_node("second", slow)
    branch.add_edge(START, "first")
    branch.add_edge("first", "second")
    fan = StateGraph(FanOut)
    fan.add_node("branch", branch.compile())
    fan.add_conditional_edges(
        START, lambda _: [Send("branch", {"x": i}) for i in range(24)], ["branch"]
    )
    url = f"sqlite:///{tmp_path / 'fan.db'}"
    config = thread()
    with MemfoldSaver.from_url(url) as saver:
        started = time.monotonic()
        fan.compile(checkpointer=saver).invoke({"results": []}, config)
        assert time.monotonic() - started < 15
    with MemfoldSaver.from_url(url) as saver:
        graph = fan.compile(checkpointer=saver)
        assert sorted(graph.get_state(config).values["results"]) == list(range(24))
        assert [s.metadata["step"] for s in graph.get_state_history(config)] == [1, 0, -1]


async def test_lookups_and_maintenance_through_the_saver(run: Runner) -> None:
    """An unknown checkpoint id is None; copy_thread, prune and delete_for_runs (which spans the
    tenant, copies included) work on graph threads through both APIs; the thread stays usable."""
    async with MemfoldSaver.afrom_url("memory://") as saver:
        graph = chat_graph(saver)
        config: RunnableConfig = {"configurable": {"thread_id": "t"}, "metadata": {"run_id": "r1"}}
        await run.invoke(graph, {"messages": [HumanMessage("one")]}, config)
        missing: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_id": "nope"}}
        assert saver.get_tuple(missing) is None
        assert await saver.aget_tuple(missing) is None
        if run.use_async:
            await saver.acopy_thread("t", "copy")
        else:
            saver.copy_thread("t", "copy")
        assert texts(await run.state(graph, thread("copy"))) == ["one", "echo: one"]
        if run.use_async:
            await saver.aprune(["t"])
        else:
            saver.prune(["t"])
        assert len(await run.history(graph, thread())) == 1
        if run.use_async:
            await saver.adelete_for_runs(["r1"])
        else:
            saver.delete_for_runs(["r1"])
        assert saver.get_tuple(thread()) is None  # its only run was deleted, in the copy too
        assert saver.get_tuple(thread("copy")) is None
        await run.invoke(graph, {"messages": [HumanMessage("two")]}, thread("t"))
        assert texts(await run.state(graph, thread("t"))) == ["two", "echo: two"]


async def test_prune_then_continue_keeps_the_conversation(run: Runner) -> None:
    """After keep_latest pruning a thread still reads and continues its whole conversation."""
    with MemfoldSaver.from_url("memory://") as saver:
        graph = chat_graph(saver)
        await chat(run, graph, 30)
        saver.prune(["t"])
        assert len(await run.history(graph, thread())) == 1
        await run.invoke(graph, {"messages": [HumanMessage("more")]}, thread())
        assert len(texts(await run.state(graph, thread()))) == 62


def test_a_saver_clone_shares_store_and_writer() -> None:
    """with_allowlist's shallow copy (used by compile) writes as the same writer, same store."""
    saver = MemfoldSaver("memory://", serde=JsonPlusSerializer())
    clone = saver.with_allowlist([("my_module", "MyType")])
    assert isinstance(clone, MemfoldSaver)
    assert clone.store is saver.store
    assert clone.writer_id == saver.writer_id
