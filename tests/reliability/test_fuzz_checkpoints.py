"""Hostile input to every checkpoint-store method, on memory, SQLite, PostgreSQL and Redis,
sync and async: a checkpoint or pending write is stored and read back exactly or refused with a
`memfold.errors` error, every other call answers or raises one, and a canary thread's
checkpoints written before are unchanged."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError
from memfold.checkpoint_history import (
    ChannelHistory,
    channel_history,
    history_depth,
    spare_history,
)
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    Lease,
    PendingWrite,
    RetentionPolicy,
    SequenceBlob,
)
from memfold.flows import arun, run
from tests.backends.test_checkpoints import make_checkpoint_store
from tests.reliability.fuzzing import (
    FUZZ,
    as_json,
    call,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    numbers,
)
from tests.support import drop_checkpoint_store

CANARY = "memfold-canary"
FUZZ_TENANT = "fuzz"
BODY = Blob("json", b'{"v": 1}')

NUMBERS = numbers(-3, 30)
TAGS = st.sampled_from(["msgpack", "json", "null", "bytes"]) | hostile_ids()


def stored_seconds(store: BaseCheckpointStore, number: Any) -> float | None:
    """``number`` seconds as get_thread_ttl reads them back after set_thread_ttl (Redis keeps
    a thread's own TTL in whole milliseconds)."""
    if number is None:
        return None
    if store.name == "redis":
        return max(1, round(number * 1000)) / 1000
    return float(number)


def blobs() -> st.SearchStrategy[Any]:
    """Blobs with hostile tags and any bytes, and things that are not blobs."""
    return st.one_of(
        st.builds(Blob, TAGS, st.binary(max_size=64)),
        st.builds(Blob, TAGS, st.binary(max_size=64)),
        st.sampled_from([b"raw", "text", None, Blob("json", "not bytes")]),  # type: ignore[arg-type]
    )


def channel_values() -> st.SearchStrategy[Any]:
    """A channel's value: a blob, a sequence blob, None, or something else."""
    items = st.lists(st.binary(max_size=16), max_size=4).map(tuple)
    return st.one_of(
        st.none(),
        blobs(),
        st.builds(SequenceBlob, TAGS, items),
        st.sampled_from([SequenceBlob("msgpack", ("x",)), SequenceBlob("msgpack", [b"x"])]),  # type: ignore[arg-type]
    )


def versions() -> st.SearchStrategy[Any]:
    """A channel version: an int, a float, a str, or not a version."""
    return st.one_of(
        st.integers(0, 10**6), st.floats(), hostile_text(max_size=20), st.sampled_from([None, True])
    )


def metadata() -> st.SearchStrategy[Any]:
    """Checkpoint metadata, with run ids and steps as LangGraph writes them, made hostile."""
    langgraph = st.fixed_dictionaries(
        {"source": hostile_text(max_size=8), "step": NUMBERS, "run_id": hostile_ids()}
    )
    return st.none() | langgraph | json_objects()


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
async def cstore(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseCheckpointStore]:
    """A fresh checkpoint store of each backend."""
    store = make_checkpoint_store(request.param, tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    """Whether the store is driven through its async twins."""
    return request.param == "async"


class Canary:
    """A thread with two checkpoints, channel values and pending writes, written before the
    fuzzing; `check` fails if any of it changed."""

    def __init__(self, store: BaseCheckpointStore) -> None:
        self.store = store
        store.put(
            CANARY, "c1", BODY, metadata={"step": 1, "run_id": "r1"},
            versions={"messages": 1, "topic": 1},
            values={"messages": SequenceBlob("msgpack", (b"a", b"b")), "topic": Blob("json", b"1")},
        )  # fmt: skip
        store.put(
            CANARY, "c2", BODY, parent_id="c1", metadata={"step": 2},
            versions={"messages": 2, "topic": 1},
            values={"messages": SequenceBlob("msgpack", (b"a", b"b", b"c"))},
        )  # fmt: skip
        store.put_writes(CANARY, "c2", [PendingWrite("task", 0, "messages", Blob("json", b"2"))])
        self.initial = self.snapshot()

    def snapshot(self) -> Any:
        return (self.store.list_checkpoints(CANARY), self.store.stats(CANARY))

    def check(self) -> None:
        assert self.snapshot() == self.initial


@pytest.fixture
def canary(cstore: BaseCheckpointStore) -> Canary:
    """The canary thread, in the store under test."""
    return Canary(cstore)


def readable(store: BaseCheckpointStore, thread_id: Any, namespace: Any, checkpoint_id: Any) -> Any:
    """The stored checkpoint, or an error marker if its key is refused."""
    try:
        return store.get(thread_id, namespace=namespace, checkpoint_id=checkpoint_id)
    except MemfoldError:
        return "refused"


@FUZZ
@given(
    thread_id=hostile_ids(),
    checkpoint_id=hostile_ids(),
    namespace=st.just("") | hostile_ids(),
    parent_id=st.none() | hostile_ids(),
    body=blobs(),
    metadata=metadata(),
    channels=st.dictionaries(
        st.sampled_from(["messages", "topic"]) | hostile_keys(),
        st.tuples(versions(), channel_values()),
        max_size=3,
    ),
)
async def test_put_stores_exactly_or_refuses(
    cstore: BaseCheckpointStore,
    canary: Canary,
    use_async: bool,
    thread_id: Any,
    checkpoint_id: Any,
    namespace: Any,
    parent_id: Any,
    body: Any,
    metadata: Any,
    channels: dict[Any, tuple[Any, Any]],
) -> None:
    """A checkpoint with hostile ids, tags, bytes, metadata, channel names and versions is read
    back exactly, or refused with a memfold error leaving the key as it was."""
    before = readable(cstore, thread_id, namespace, checkpoint_id)
    versions = {channel: version for channel, (version, _) in channels.items()}
    values = {channel: value for channel, (_, value) in channels.items()}
    try:
        await call(
            use_async, cstore, "put", thread_id, checkpoint_id, body, namespace=namespace,
            parent_id=parent_id, metadata=metadata, versions=versions, values=values,
        )  # fmt: skip
    except MemfoldError:
        assert readable(cstore, thread_id, namespace, checkpoint_id) == before
    else:
        got = cstore.get(thread_id, namespace=namespace, checkpoint_id=checkpoint_id)
        assert got is not None
        assert (got.thread_id, got.namespace, got.checkpoint_id, got.parent_id) == (
            thread_id, namespace, checkpoint_id, parent_id,
        )  # fmt: skip
        assert (got.body, got.metadata, got.versions) == (body, as_json(metadata or {}), versions)
        assert got.values == {c: v for c, v in values.items() if v is not None}
    canary.check()


@FUZZ
@given(
    thread_id=hostile_ids(),
    checkpoint_id=hostile_ids(),
    writes=st.lists(
        st.builds(
            PendingWrite,
            task_id=hostile_ids(),
            idx=NUMBERS,
            channel=hostile_ids(),
            value=blobs(),
            task_path=st.just("") | hostile_ids(),
        ),
        max_size=3,
    ),
)
async def test_pending_writes_store_exactly_or_refuse(
    cstore: BaseCheckpointStore,
    canary: Canary,
    use_async: bool,
    thread_id: Any,
    checkpoint_id: Any,
    writes: list[PendingWrite],
) -> None:
    """Pending writes with hostile task ids, channels, paths, indexes and blobs are attached to
    their checkpoint exactly, or refused with a memfold error."""
    try:
        await call(use_async, cstore, "delete_thread", thread_id)  # no writes of earlier examples
        await call(use_async, cstore, "put", thread_id, checkpoint_id, BODY)
    except MemfoldError:
        return
    try:
        await call(use_async, cstore, "put_writes", thread_id, checkpoint_id, writes)
    except MemfoldError:
        stored = cstore.get(thread_id, checkpoint_id=checkpoint_id)
        assert stored is not None
        assert stored.writes == ()
    else:
        stored = cstore.get(thread_id, checkpoint_id=checkpoint_id)
        assert stored is not None
        kept = {(w.task_id, w.idx): w for w in writes if w.idx < 0}
        for w in writes:
            if w.idx >= 0:
                kept.setdefault((w.task_id, w.idx), w)
        assert sorted(stored.writes, key=repr) == sorted(kept.values(), key=repr)
    canary.check()


@FUZZ
@given(
    lease=st.none() | st.builds(Lease, hostile_ids(), NUMBERS, st.booleans()),
    op=st.sampled_from(
        ["list", "delete_thread", "delete_for_runs", "copy_thread", "prune", "set_thread_ttl",
         "release", "sweep", "stats", "get", "channel_history", "read_channel_history"]
    ),
    thread_id=hostile_ids(),
    other=hostile_ids(),
    namespace=st.none() | hostile_ids(),
    filter=st.none() | json_objects(),
    number=NUMBERS,
    policy=st.builds(RetentionPolicy, NUMBERS, NUMBERS, NUMBERS) | st.sampled_from([None, "x"]),
    strategy=st.sampled_from(["keep_latest", "delete"]) | hostile_text(),
    newest=st.booleans(),
)  # fmt: skip
async def test_every_call_answers_or_refuses(
    cstore: BaseCheckpointStore,
    canary: Canary,
    use_async: bool,
    lease: Any,
    op: str,
    thread_id: Any,
    other: Any,
    namespace: Any,
    filter: Any,
    number: Any,
    policy: Any,
    strategy: Any,
    newest: bool,
) -> None:
    """Listing, deleting, copying, pruning, own TTLs (set_thread_ttl, read back by
    get_thread_ttl), leases, sweeps, stats and channel histories with hostile ids, channels,
    filters, numbers and policies, on a thread just written with a hostile lease, answer or
    raise a memfold error, and never touch another thread."""
    with contextlib.suppress(MemfoldError):
        await call(use_async, cstore, "put", thread_id, "c1", BODY, lease=lease, tenant=FUZZ_TENANT)
    try:
        if op == "list":
            await call(
                use_async, cstore, "list_checkpoints", thread_id, namespace=namespace,
                filter=filter, before=other, limit=number, tenant=FUZZ_TENANT,
            )  # fmt: skip
        elif op == "delete_for_runs":
            await call(use_async, cstore, "delete_for_runs", [thread_id, other], tenant=FUZZ_TENANT)
        elif op == "copy_thread":
            await call(use_async, cstore, "copy_thread", thread_id, other, tenant=FUZZ_TENANT)
        elif op == "prune":
            await call(
                use_async, cstore, "prune", [thread_id], strategy=strategy, tenant=FUZZ_TENANT
            )
        elif op == "set_thread_ttl":
            held = await call(
                use_async, cstore, "set_thread_ttl", thread_id, number, tenant=FUZZ_TENANT
            )
            ttl = await call(use_async, cstore, "get_thread_ttl", thread_id, tenant=FUZZ_TENANT)
            assert ttl == (stored_seconds(cstore, number) if held else None)
        elif op == "release":
            await call(use_async, cstore, "release", thread_id, other, tenant=FUZZ_TENANT)
        elif op == "sweep":
            await call(use_async, cstore, "sweep", policy, tenant=FUZZ_TENANT)
        elif op == "get":
            await call(
                use_async, cstore, "get", thread_id, namespace=namespace or "", tenant=FUZZ_TENANT
            )
        elif op == "channel_history":
            flow = channel_history(
                cstore, thread_id, [other, "x"] if newest else other, namespace=namespace or "",
                checkpoint_id=None if newest else other, tenant=FUZZ_TENANT,
            )  # fmt: skip
            found: dict[str, ChannelHistory] = await arun(flow) if use_async else run(flow)
            assert all(h == ChannelHistory() for h in found.values())  # nothing before c1
        elif op == "read_channel_history":
            read = await call(
                use_async, cstore, op, thread_id, [other, "x"] if newest else other,
                namespace=namespace or "", checkpoint_id=None if newest else other,
                tenant=FUZZ_TENANT,
            )  # fmt: skip
            assert read is None or all(h == ChannelHistory() for h in read.values())
        else:
            await call(use_async, cstore, op, thread_id, tenant=FUZZ_TENANT)
    except MemfoldError:
        pass
    canary.check()


def test_counts_past_their_columns_are_refused(cstore: BaseCheckpointStore, canary: Canary) -> None:
    """Regression: a pending write's idx past 32 bits, and a listing's limit or a retention
    policy's keep_last past 64 bits, are InvalidInput on every backend (SQLite raised
    OverflowError, PostgreSQL refused what memory and SQLite stored)."""
    for idx in (2**31, -(2**31) - 1, 2**63):
        with pytest.raises(InvalidInput, match="idx"):
            cstore.put_writes(CANARY, "c2", [PendingWrite("task", idx, "messages", BODY)])
    with pytest.raises(InvalidInput, match="limit"):
        cstore.list_checkpoints(CANARY, limit=2**63)
    with pytest.raises(InvalidInput, match="keep_last"):
        cstore.sweep(RetentionPolicy(keep_last=2**63))
    canary.check()
    edges = [PendingWrite("task", i, "topic", BODY) for i in (2**31 - 1, -(2**31))]
    cstore.put_writes(CANARY, "c1", edges)
    stored = cstore.get(CANARY, checkpoint_id="c1")
    assert stored is not None
    assert sorted(w.idx for w in stored.writes) == [-(2**31), 2**31 - 1]


COUNTERS = st.one_of(
    st.dictionaries(
        hostile_text(max_size=8),
        st.lists(NUMBERS, max_size=3) | NUMBERS | hostile_text(max_size=8),
        max_size=3,
    ),
    st.sampled_from([None, [], "counters", 3]),
)


@FUZZ
@given(
    metadata=st.lists(
        st.fixed_dictionaries(
            {},
            optional={"counters_since_delta_snapshot": COUNTERS, "delta_writes_versioned": NUMBERS},
        )
        | json_objects().filter(lambda m: isinstance(m, dict)),
        min_size=8,
        max_size=8,
    ),
    parents=st.lists(st.none() | st.integers(0, 11), min_size=8, max_size=8),
    doomed=st.sets(st.integers(0, 9)),
)
@example(  # a count JSON can hold but int() cannot
    metadata=[{"counters_since_delta_snapshot": {"d": [1, float("inf")]}}] * 8,
    parents=[None, 0, 1, 2, 3, 4, 5, 6],
    doomed={0, 1, 2},
)
def test_retention_spares_the_history_of_any_metadata_and_parents(
    metadata: list[dict[str, Any]], parents: list[int | None], doomed: set[int]
) -> None:
    """Whatever the metadata and parents (missing, looping), `history_depth` is a count or
    infinity, and `spare_history` returns part of ``doomed`` that leaves each kept checkpoint
    its `history_depth` nearest ancestors."""
    lineage = dict(enumerate(zip(parents, metadata, strict=True)))
    spared = spare_history(doomed, lineage)
    assert spared <= doomed
    for checkpoint, (_, md) in lineage.items():
        depth = history_depth(md)
        assert depth >= 0
        if checkpoint in spared:
            continue
        cursor, seen = lineage[checkpoint][0], set()
        while depth > 0 and cursor in lineage and cursor not in seen:
            assert cursor not in spared
            seen.add(cursor)
            cursor, depth = lineage[cursor][0], depth - 1
