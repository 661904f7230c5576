"""Hostile input to every LangGraph adapter entry point (the checkpoint saver, the long-term
store and the compaction hook), on memory and SQLite stores, sync and async: each call returns
(and what it stores reads back exactly) or raises a `memfold.errors` error, and canary data
written before is unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp

from memfold import InvalidInput, MemfoldError
from memfold.checkpoints import BaseCheckpointStore, open_checkpoint_store
from memfold.compaction import ApproximateCounter, RunningSummary
from memfold.integrations.langgraph import MemfoldSaver, MemfoldStore, compaction_hook
from memfold.memories import BaseMemoryStore
from tests.reliability.fuzzing import (
    FUZZ,
    FUZZ_SLOW,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    json_values,
    numbers,
)
from tests.reliability.test_fuzz_langchain import _plain_json, lc_messages
from tests.reliability.test_fuzz_memories import Canary, filters, namespaces

NUMBERS = numbers(-3, 30)
CANARY_CONFIG = {"configurable": {"thread_id": "memfold-canary", "checkpoint_ns": ""}}


@pytest.fixture
async def cstore(backend: str, tmp_path: Path) -> AsyncIterator[BaseCheckpointStore]:
    """A fresh checkpoint store of each backend."""
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'checkpoints.db'}"
    store = open_checkpoint_store(url)
    yield store
    await store.aclose()


def _checkpoint(values: dict[str, Any]) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    return checkpoint


class SaverCanary:
    """A thread with two checkpoints and a pending write, written before the fuzzing."""

    def __init__(self, saver: MemfoldSaver) -> None:
        self.saver = saver
        config: Any = CANARY_CONFIG
        for n in range(2):
            config = saver.put(config, _checkpoint({"n": n, "messages": ["a", "b"][: n + 1]}),
                               {"step": n}, {"n": 1, "messages": 1})  # fmt: skip
        saver.put_writes(config, [("n", 5)], "task-1")
        self.initial = self.snapshot()

    def snapshot(self) -> Any:
        return [(t.config, t.checkpoint["channel_values"], t.metadata, t.pending_writes)
                for t in self.saver.list(CANARY_CONFIG)]  # fmt: skip

    def check(self) -> None:
        assert self.snapshot() == self.initial


@pytest.fixture
def saver(cstore: BaseCheckpointStore) -> MemfoldSaver:
    """A saver on the store under test, with leases off (each example is a new writer)."""
    return MemfoldSaver(cstore, lease_seconds=None)


@pytest.fixture
def saver_canary(saver: MemfoldSaver) -> SaverCanary:
    """The canary thread, in the store under test."""
    return SaverCanary(saver)


def configs() -> st.SearchStrategy[Any]:
    """Run configs with hostile thread ids, checkpoint namespaces and ids, and non-configs."""
    configurable = st.fixed_dictionaries(
        {"thread_id": hostile_ids()},
        optional={
            "checkpoint_ns": hostile_ids(),
            "checkpoint_id": st.none() | hostile_ids(),
            "run_id": hostile_ids(),
        },
    )
    return st.one_of(
        st.fixed_dictionaries({"configurable": configurable}),
        st.fixed_dictionaries(
            {
                "configurable": configurable,
                "metadata": st.dictionaries(hostile_keys(), json_values(max_leaves=3)),
            }
        ),
        st.sampled_from([None, {}, {"configurable": None}, {"configurable": {}}, "t1", 1]),
    )


@FUZZ
@given(
    config=configs(),
    values=st.dictionaries(hostile_text(max_size=10), json_values(max_leaves=6), max_size=3)
    | st.sampled_from([None, [], "x"]),
    metadata=json_objects(max_leaves=4),
    new_versions=st.none() | st.dictionaries(hostile_keys(), NUMBERS | hostile_text(), max_size=3),
    writes=st.lists(st.tuples(hostile_keys(), json_values(max_leaves=4)), max_size=3)
    | st.sampled_from([None, "x", [("only one",)]]),
    task=st.tuples(hostile_ids(), hostile_ids()),
)
async def test_saver_puts_exactly_or_refuses(
    saver: MemfoldSaver,
    saver_canary: SaverCanary,
    use_async: bool,
    config: Any,
    values: Any,
    metadata: Any,
    new_versions: Any,
    writes: Any,
    task: tuple[Any, Any],
) -> None:
    """`MemfoldSaver.put` and ``put_writes`` (and ``aput``, ``aput_writes``) of checkpoints
    with hostile configs, channel values, metadata, versions and writes: ``get_tuple`` reads
    the values and writes back exactly, or a memfold error is raised; the canary thread is
    unchanged."""
    checkpoint = _checkpoint(values) if isinstance(values, dict) else values
    versions = (
        dict.fromkeys(values, 1)
        if new_versions is None and isinstance(values, dict)
        else new_versions
    )
    try:
        if use_async:
            saved = await saver.aput(config, checkpoint, metadata, versions)
            await saver.aput_writes(saved, writes, *task)
            got = await saver.aget_tuple(saved)
        else:
            saved = saver.put(config, checkpoint, metadata, versions)
            saver.put_writes(saved, writes, *task)
            got = saver.get_tuple(saved)
        assert got is not None
        changed = {ch: v for ch, v in values.items() if ch in versions}
        if _plain_json(changed):
            assert got.checkpoint["channel_values"] == changed
        if _plain_json(writes):
            assert [(w[1], w[2]) for w in got.pending_writes or []] == [tuple(w) for w in writes]
    except MemfoldError:
        pass
    saver_canary.check()


@FUZZ
@given(
    op=st.sampled_from(["get_tuple", "list", "delete_thread", "delete_for_runs", "copy_thread",
                        "prune", "release", "get_delta_channel_history"]),
    config=configs(),
    filter=st.none() | json_objects(max_leaves=3),
    before=st.none() | configs(),
    limit=st.none() | NUMBERS,
    thread_ids=st.lists(hostile_ids(), max_size=3) | hostile_ids(),
    target=hostile_ids(),
    strategy=st.sampled_from(["keep_latest", "delete"]) | hostile_ids(),
)  # fmt: skip
async def test_saver_reads_and_deletes_answer_or_refuse(
    saver: MemfoldSaver,
    saver_canary: SaverCanary,
    use_async: bool,
    op: str,
    config: Any,
    filter: Any,
    before: Any,
    limit: Any,
    thread_ids: Any,
    target: Any,
    strategy: Any,
) -> None:
    """``get_tuple``, ``list``, ``delete_thread``, ``delete_for_runs``, ``copy_thread``,
    ``prune``, ``release`` and ``get_delta_channel_history`` (and their ``a`` twins) with
    hostile configs, filters, limits, thread ids, channels and strategies answer or raise a
    memfold error, and never touch the canary thread (no hostile id names it)."""
    first = thread_ids[0] if isinstance(thread_ids, list) and thread_ids else thread_ids
    try:
        if op == "list":
            if use_async:
                found = [
                    t async for t in saver.alist(config, filter=filter, before=before, limit=limit)
                ]
            else:
                found = list(saver.list(config, filter=filter, before=before, limit=limit))
            assert limit is None or len(found) <= limit
        elif op == "get_tuple":
            await (saver.aget_tuple(config) if use_async else _done(saver.get_tuple(config)))
        elif op in ("delete_thread", "release"):
            method = getattr(saver, ("a" if use_async else "") + op)
            await (method(first) if use_async else _done(method(first)))
        elif op == "copy_thread":
            await (saver.acopy_thread(first, target) if use_async
                   else _done(saver.copy_thread(first, target)))  # fmt: skip
        elif op == "prune":
            await (saver.aprune(thread_ids, strategy=strategy) if use_async
                   else _done(saver.prune(thread_ids, strategy=strategy)))  # fmt: skip
        elif op == "get_delta_channel_history":
            channels = thread_ids  # hostile names, or not a list at all
            found = await (
                saver.aget_delta_channel_history(config=config, channels=channels) if use_async
                else _done(saver.get_delta_channel_history(config=config, channels=channels))
            )  # fmt: skip
            assert set(found) <= set(channels)
        else:
            await (saver.adelete_for_runs(thread_ids) if use_async
                   else _done(saver.delete_for_runs(thread_ids)))  # fmt: skip
    except MemfoldError:
        pass
    saver_canary.check()


async def _done(value: Any) -> Any:
    """``value``, awaitable (so sync and async calls share one ``await``)."""
    return value


@FUZZ_SLOW
@given(
    url=st.sampled_from(["memory://", "sqlite"]) | hostile_text(max_size=20) | hostile_ids(),
    tenant=st.none() | hostile_ids(),
    lease=st.none() | NUMBERS,
    handover=st.booleans() | hostile_ids(),
    writer_id=st.none() | hostile_ids(),
)
async def test_saver_opens_or_refuses(
    tmp_path: Path,
    use_async: bool,
    url: Any,
    tenant: Any,
    lease: Any,
    handover: Any,
    writer_id: Any,
) -> None:
    """`MemfoldSaver` and ``from_url`` (``afrom_url``) with hostile URLs, tenants, lease
    lengths, handover flags and writer ids: a saver whose first put and read work, or a
    memfold error."""
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'opened.db'}"
    options = {"tenant": tenant, "lease_seconds": lease, "handover": handover,
               "writer_id": writer_id}  # fmt: skip
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    try:
        if use_async:
            async with MemfoldSaver.afrom_url(url, **options) as saver:
                saved = await saver.aput(config, _checkpoint({"n": 1}), {}, {"n": 1})
                got = await saver.aget_tuple(saved)
        else:
            with MemfoldSaver.from_url(url, **options) as saver:
                saved = saver.put(config, _checkpoint({"n": 1}), {}, {"n": 1})
                got = saver.get_tuple(saved)
        assert got is not None
        assert got.checkpoint["channel_values"] == {"n": 1}
    except MemfoldError:
        pass


# -- Long-term store ----------------------------------------------------------------------------


def lg_namespaces() -> st.SearchStrategy[Any]:
    """LangGraph namespaces (no tenant label): hostile tuples and non-tuples."""
    return namespaces() | st.just(()) | st.just(("memfold-canary", "user"))


def store_ops() -> st.SearchStrategy[Any]:
    """LangGraph store operations with hostile fields."""
    value = json_objects(max_leaves=6) | st.none()
    index = (
        st.none()
        | st.just(False)
        | st.lists(
            st.sampled_from(["$", "text", "a.b", "x[0]"]) | hostile_text(max_size=6), max_size=2
        )
    )
    match = st.builds(
        MatchCondition, st.sampled_from(["prefix", "suffix"]) | hostile_ids(), namespaces()
    )
    query = st.none() | hostile_text() | hostile_ids()
    return st.one_of(
        st.builds(PutOp, lg_namespaces(), hostile_ids(), value, index, st.none() | NUMBERS),
        st.builds(GetOp, lg_namespaces(), hostile_ids(), st.booleans() | hostile_ids()),
        st.builds(
            SearchOp, lg_namespaces(), filters() | json_objects(max_leaves=3), NUMBERS, NUMBERS,
            query, st.booleans(),
        ),
        st.builds(
            ListNamespacesOp, st.none() | st.lists(match, max_size=2).map(tuple),
            st.none() | NUMBERS, NUMBERS, NUMBERS,
        ),
        st.sampled_from([None, "op", ("get",)]),
    )  # fmt: skip


@FUZZ
@given(
    ops=st.lists(store_ops(), max_size=4),
    tenant=st.none() | hostile_ids(),
    fields=st.none() | st.lists(hostile_text(max_size=6), max_size=2) | st.just(["text"]),
)
async def test_store_batch_answers_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    ops: list[Any],
    tenant: Any,
    fields: Any,
) -> None:
    """`MemfoldStore` built with hostile tenants and index fields, and ``batch`` (``abatch``)
    of hostile puts, gets, searches and namespace listings: a put then get of the same key in
    one batch reads the value back exactly, every op answers or the batch raises a memfold
    error, and the canary records (in another tenant) are unchanged."""
    try:
        store = MemfoldStore(
            mstore, tenant=tenant, index=None if fields is None else {"fields": fields}
        )
        for op in ops:
            probe = [op]
            if isinstance(op, PutOp) and op.value is not None:
                probe.append(GetOp(op.namespace, op.key, False))
            results = await store.abatch(probe) if use_async else store.batch(probe)
            assert len(results) == len(probe)
            # A TTL under a minute may run out before the get.
            if len(probe) == 2 and op.ttl is not None and op.ttl < 1:
                continue
            if len(probe) == 2 and _plain_json(op.value):
                assert results[1] is not None
                assert results[1].value == op.value
    except MemfoldError:
        pass
    canary.check()


# -- Compaction hook ----------------------------------------------------------------------------


@FUZZ
@given(
    history=st.lists(lc_messages().filter(lambda m: m.id), max_size=10)
    | st.sampled_from([None, "hi", [None]]),
    record=st.none() | json_objects(max_leaves=4),
    strategy=st.just("good") | st.sampled_from([None, 60, "x"]),
    state_kind=st.sampled_from(["state", "no messages", "not a mapping"]),
)
async def test_compaction_hook_answers_or_refuses(
    use_async: bool, history: Any, record: Any, strategy: Any, state_kind: str
) -> None:
    """`compaction_hook` built with hostile strategies, run (``invoke``/``ainvoke``) on hostile
    states: the update holds the view of the caller's messages, or a memfold error is raised;
    the state passed in is never changed."""
    running = RunningSummary(60, counter=ApproximateCounter()) if strategy == "good" else strategy
    state: Any = {"messages": history, "memfold_compaction": record}
    if state_kind == "no messages":
        state = {"memfold_compaction": record}
    elif state_kind == "not a mapping":
        state = history
    before = [id(m) for m in history] if isinstance(history, list) else history
    try:
        hook = compaction_hook(running)
        update = await hook.ainvoke(state) if use_async else hook.invoke(state)
        assert isinstance(update["llm_input_messages"], list)
    except MemfoldError:
        pass
    assert ([id(m) for m in history] if isinstance(history, list) else history) == before


# -- Regressions --------------------------------------------------------------------------------

CONFIG = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}

REGRESSIONS: list[tuple[str, Any]] = [
    ("put with no config", lambda s: s.put(None, _checkpoint({"n": 1}), {}, {"n": 1})),
    ("put with no thread_id", lambda s: s.put({"configurable": {}}, _checkpoint({}), {}, {})),
    (
        "put of a value msgpack cannot hold",
        lambda s: s.put(CONFIG, _checkpoint({"n": 2**64}), {}, {"n": 1}),
    ),
    ("put of a checkpoint that is not a dict", lambda s: s.put(CONFIG, "x", {}, {})),
    ("put_writes of a str", lambda s: s.put_writes(CONFIG, "ab", "task")),
    ("list before a non-config", lambda s: list(s.list(None, before={}))),
    ("prune of a float", lambda s: s.prune(1.5)),
    ("prune of a str", lambda s: s.prune("abc")),
    ("delete_thread of None", lambda s: s.delete_thread(None)),
    (
        "batch with a str max_depth",
        lambda s: MemfoldStore().batch([ListNamespacesOp(max_depth="3")]),
    ),
    ("batch with an int key", lambda s: MemfoldStore().batch([GetOp(("a",), 1)])),
    ("batch of a str namespace", lambda s: MemfoldStore().batch([PutOp("ns", "k", {"a": 1})])),
    ("batch with a None limit", lambda s: MemfoldStore().batch([SearchOp(("a",), limit=None)])),
    (
        "hook on a state without messages",
        lambda s: compaction_hook(RunningSummary(60, counter=ApproximateCounter())).invoke({}),
    ),
    ("hook without a RunningSummary", lambda s: compaction_hook(None)),
]
"""Calls that raised a builtin error (or stored under thread "None") before the fuzz suite
found them."""


@pytest.mark.parametrize(("case", "call"), REGRESSIONS, ids=[c for c, _ in REGRESSIONS])
def test_found_bugs_raise_invalid_input(
    saver: MemfoldSaver, saver_canary: SaverCanary, case: str, call: Any
) -> None:
    """Each input the fuzzing found crashing an adapter now raises `InvalidInput`, and the
    canary thread is unchanged."""
    with pytest.raises(InvalidInput):
        call(saver)
    saver_canary.check()
    assert saver.get_tuple({"configurable": {"thread_id": "None"}}) is None
