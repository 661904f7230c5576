"""Restoring records with their original times, on every backend, sync and async: what import
and migrate write with (threads, checkpoints, journal entries and long-term memories)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from memfold import InvalidInput, Message, ThreadInfo, UnsupportedOperation
from memfold.checkpoints import Blob, Checkpoint, PendingWrite, SequenceBlob
from memfold.journal import EffectJournal, JournalEntry
from memfold.limits import EARLIEST_TIME, LATEST_TIME
from memfold.memories import BaseMemoryStore, MemoryRecord, open_memory_store
from memfold.recall.vectors import unit
from tests.backends.test_checkpoints import CHECKPOINT_BACKENDS, make_checkpoint_store
from tests.support import (
    MEMORY_DIMS,
    REDIS_URL,
    Api,
    drop_checkpoint_store,
    make_memory_store,
)

T1 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
EDGES = (EARLIEST_TIME, LATEST_TIME - timedelta(microseconds=1))
"""The first and last times every backend restores exactly."""
OUTSIDE = (EARLIEST_TIME - timedelta(microseconds=1), LATEST_TIME)
T2 = T1 + timedelta(days=2, microseconds=3)
T3 = T1 + timedelta(days=30)


# Threads: `api` is the suite's thread store of each backend, sync or async (conftest.py).


async def test_restore_thread_sets_metadata_and_both_times(api: Api) -> None:
    """The thread gets the metadata and times given, keeps its messages, and lists by them."""
    stored = await api.append("t", [Message(role="user", content="hi")])
    await api.append("newer", Message(role="user", content="later"))
    info = ThreadInfo("t", "default", T1, T2, 0, {"topic": "tea", "n": [1, 2.5]})
    restored = await api.restore_thread(info)
    assert restored == replace(info, message_count=1)
    assert await api.get_thread("t") == restored
    assert await api.load("t") == stored
    assert [i.thread_id for i in await api.list_threads()] == ["newer", "t"]


async def test_restore_thread_creates_a_thread_and_orders_it_by_its_update_time(api: Api) -> None:
    """A new thread is created empty; restored threads list newest update first whatever the
    order they were restored in."""
    for thread_id, when in (("x", T1), ("y", T3), ("z", T2)):
        info = await api.restore_thread(ThreadInfo(thread_id, "acme", T1, when, 0, {}))
        assert (info.message_count, info.updated_at) == (0, when)
    assert [i.thread_id for i in await api.list_threads(tenant="acme")] == ["y", "z", "x"]
    assert await api.list_threads() == []


async def test_restore_thread_refuses_naive_times_and_other_types(api: Api) -> None:
    """A time without a zone or a non-ThreadInfo is InvalidInput, and nothing is written."""
    naive = ThreadInfo("t", "default", T1.replace(tzinfo=None), T1, 0, {})
    with pytest.raises(InvalidInput, match="timezone-aware"):
        await api.restore_thread(naive)
    with pytest.raises(InvalidInput, match="ThreadInfo"):
        await api.restore_thread({"thread_id": "t"})
    assert await api.list_threads() == []


async def test_restore_thread_keeps_the_edge_times_and_refuses_beyond(api: Api) -> None:
    """The first and last restorable times come back exactly; a time outside them is
    InvalidInput and nothing is written (SQLite raised a raw ValueError in year 9999 after
    writing, Redis refused 1969 half-way; found by fuzzing import)."""
    for i, when in enumerate(EDGES):
        info = await api.restore_thread(ThreadInfo(f"t{i}", "acme", when, when, 0, {}))
        assert (info.created_at, info.updated_at) == (when, when)
        assert await api.get_thread(f"t{i}", tenant="acme") == info
    for when in OUTSIDE:
        with pytest.raises(InvalidInput, match="from 1970-01-01 to before 2200-01-01"):
            await api.restore_thread(ThreadInfo("x", "acme", T1, when, 0, {}))
    assert [i.thread_id for i in await api.list_threads(tenant="acme")] == ["t1", "t0"]


# Checkpoints.


@pytest.fixture(params=CHECKPOINT_BACKENDS)
async def checkpoints(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A fresh checkpoint store of each backend (driven sync; the async twin is checked by
    `test_checkpoint_restore_async`)."""
    store = make_checkpoint_store(str(request.param), tmp_path)
    yield Api(store, False)  # type: ignore[arg-type]
    await store.aclose()
    drop_checkpoint_store(store)


def chain() -> list[Checkpoint]:
    """A parent and a child with a growing list, a plain value, a None channel and writes."""
    parent = Checkpoint(
        "g", "", "c1", None, T1, {"source": "input", "step": -1}, Blob("msgpack", b"\x81\x01"),
        {"messages": 1, "mode": "1.0"}, {"messages": SequenceBlob("msgpack", (b"a", b"b")),
        "mode": Blob("json", b'"fast"')},
    )  # fmt: skip
    writes = (
        PendingWrite("task-1", 0, "messages", Blob("msgpack", b"c"), "~path"),
        PendingWrite("task-2", -1, "__error__", Blob("json", b'"boom"')),
    )
    child = Checkpoint(
        "g", "", "c2", "c1", T2, {"source": "loop", "step": 0, "user_id": "ann"},
        Blob("msgpack", b"\x81\x02"), {"messages": 2, "mode": "1.0", "empty": 1.5},
        {"messages": SequenceBlob("msgpack", (b"a", b"b", b"c")),
         "mode": Blob("json", b'"fast"')},
        tuple(sorted(writes, key=lambda w: (w.task_path, w.task_id, w.idx))),
    )  # fmt: skip
    return [parent, child]


async def test_restored_checkpoints_read_back_identical(checkpoints: Api) -> None:
    """Ids, parent, metadata, versions, values, writes and created_at all survive."""
    for checkpoint in chain():
        await checkpoints.restore(checkpoint, tenant="acme")
    got = await checkpoints.list_checkpoints("g", tenant="acme")
    assert got == chain()[::-1]
    assert await checkpoints.get("g", tenant="acme") == chain()[1]
    assert await checkpoints.list_checkpoints("g") == []


async def test_checkpoint_restore_async(tmp_path: Path) -> None:
    """arestore stores the same as restore, times included."""
    store = make_checkpoint_store("sqlite", tmp_path)
    for checkpoint in chain():
        await store.arestore(checkpoint)
    assert await store.alist_checkpoints("g") == chain()[::-1]
    await store.aclose()


async def test_checkpoint_restore_refuses_bad_input(checkpoints: Api) -> None:
    """A naive created_at, a non-Checkpoint or a bad write is InvalidInput; nothing is stored."""
    parent = chain()[0]
    with pytest.raises(InvalidInput, match="timezone-aware"):
        await checkpoints.restore(replace(parent, created_at=T1.replace(tzinfo=None)))
    with pytest.raises(InvalidInput, match="Checkpoint"):
        await checkpoints.restore(parent.body)
    with pytest.raises(InvalidInput, match="PendingWrite"):
        await checkpoints.restore(replace(parent, writes=("not a write",)))
    assert await checkpoints.list_checkpoints("g") == []


async def test_checkpoint_restore_keeps_the_edge_times_and_refuses_beyond(
    checkpoints: Api,
) -> None:
    """A checkpoint restored at either edge time reads back exactly; beyond is InvalidInput."""
    parent = chain()[0]
    for i, when in enumerate(EDGES):
        await checkpoints.restore(replace(parent, thread_id=f"g{i}", created_at=when))
        assert (await checkpoints.get(f"g{i}")).created_at == when
    for when in OUTSIDE:
        with pytest.raises(InvalidInput, match="from 1970-01-01 to before 2200-01-01"):
            await checkpoints.restore(replace(parent, created_at=when))
    assert await checkpoints.list_checkpoints("g") == []


# The effect journal.


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("backend", CHECKPOINT_BACKENDS)
async def test_restored_journal_entries_keep_their_time(
    backend: str, use_async: bool, tmp_path: Path
) -> None:
    """An entry is recorded with its own time; the first recorded entry of a call stays."""
    store = make_checkpoint_store(backend, tmp_path)
    journal = Api(EffectJournal(store), use_async)  # type: ignore[arg-type]
    entry = JournalEntry("g", "sub", "call-1", Blob("msgpack", b"\x00\xff"), T1)
    try:
        assert await journal.restore(entry, tenant="acme") == entry
        assert await journal.get("g", "call-1", namespace="sub", tenant="acme") == entry
        later = replace(entry, value=Blob("json", b"1"), recorded_at=T2)
        assert await journal.restore(later, tenant="acme") == entry
        assert await journal.list_entries("g", tenant="acme") == [entry]
        with pytest.raises(InvalidInput, match="timezone-aware"):
            await journal.restore(replace(entry, recorded_at=T1.replace(tzinfo=None)))
    finally:
        await store.aclose()
        drop_checkpoint_store(store)


# Long-term memories.

MEMORY_RESTORE_BACKENDS = ["memory", "sqlite", "postgresql", "chroma", "redis"]


def open_memories(backend: str, tmp_path: Path, **options: object) -> BaseMemoryStore:
    if backend == "redis":
        prefix = f"memfold-test:{uuid.uuid4().hex}:"
        return open_memory_store(REDIS_URL, key_prefix=prefix, **options)  # type: ignore[arg-type]
    return make_memory_store(backend, tmp_path, **options)  # type: ignore[arg-type]


@pytest.fixture(params=MEMORY_RESTORE_BACKENDS)
async def memories(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A fresh memory store of each backend that keeps at most one record per namespace."""
    store = open_memories(str(request.param), tmp_path, capacity=1)
    yield Api(store, False)  # type: ignore[arg-type]
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops a test schema or keys


def records(with_vectors: bool) -> list[MemoryRecord]:
    """Two records of one namespace with every field set, one expiring and one used later."""
    vector = tuple(float(x) for x in unit([(i % 7) - 3.0 for i in range(MEMORY_DIMS)], None))
    zone = timezone(timedelta(hours=2))
    return [
        MemoryRecord(
            ("acme", "ann", "prefs"), "r1", "likes green tea", {"kind": "pref", "n": 1.5},
            vector if with_vectors else None, "model-a" if with_vectors else None, 0.25,
            None, T1, T2, T3, None,
        ),
        MemoryRecord(
            ("acme", "ann", "prefs"), "r2", "", {"kv": {"nested": [1, None]}}, None, None, 1.0,
            86400.0 * 365 * 20, T1.astimezone(zone), T1, T2, T2 + timedelta(days=365 * 20),
        ),
    ]  # fmt: skip


async def test_restored_memories_read_back_identical(memories: Api) -> None:
    """Times, expiry, vector and model come back as given, and capacity does not evict."""
    store = memories.store
    given = records(with_vectors=store.capabilities.vector_search)
    stored = await memories.restore_many(given)
    assert stored == given
    got = await memories.get_many(("acme", "ann", "prefs"), ["r1", "r2"], include_embedding=True)
    assert got == given
    listed = await memories.list_records(("acme",), include_embedding=True)
    assert listed == given


async def test_restore_replaces_a_live_record_whole(memories: Api) -> None:
    """A record restored over a live one with its id takes every field from the restore."""
    await memories.put(("acme", "ann", "prefs"), "an older text", id="r1")
    first = records(with_vectors=False)[0]
    await memories.restore_many([first])
    assert await memories.get(("acme", "ann", "prefs"), "r1") == first


async def test_memory_restore_refuses_bad_input(memories: Api) -> None:
    """No id, a missing or naive time, or a vector where there is no vector search is refused
    before anything is written."""
    first = records(with_vectors=False)[0]
    with pytest.raises(InvalidInput, match="id"):
        await memories.restore_many([replace(first, id=None)])
    with pytest.raises(InvalidInput, match="last_used_at"):
        await memories.restore_many([replace(first, last_used_at=None)])
    with pytest.raises(InvalidInput, match="timezone-aware"):
        await memories.restore_many([replace(first, created_at=T1.replace(tzinfo=None))])
    with pytest.raises(InvalidInput, match="sequence"):
        await memories.restore_many(first)
    if not memories.store.capabilities.vector_search:
        with pytest.raises(UnsupportedOperation):
            await memories.restore_many(records(with_vectors=True))
    assert await memories.count(("acme",)) == 0


async def test_memory_restore_keeps_the_edge_times_and_refuses_beyond(memories: Api) -> None:
    """A record restored with edge times reads back exactly; beyond is InvalidInput."""
    first = records(with_vectors=False)[0]
    for i, when in enumerate(EDGES):
        given = replace(first, id=f"r{i}", created_at=when, updated_at=when, last_used_at=when)
        assert await memories.restore_many([given]) == [given]
        assert await memories.get(("acme", "ann", "prefs"), f"r{i}") == given
    for when in OUTSIDE:
        with pytest.raises(InvalidInput, match="from 1970-01-01 to before 2200-01-01"):
            await memories.restore_many([replace(first, last_used_at=when)])
    assert await memories.count(("acme",)) == 2


async def test_memory_restore_async(tmp_path: Path) -> None:
    """arestore_many stores the same as restore_many."""
    store = open_memories("sqlite", tmp_path)
    assert await store.arestore_many(records(with_vectors=True)) == records(with_vectors=True)
    assert await store.alist_records(("acme",), include_embedding=True) == records(True)
    await store.aclose()
