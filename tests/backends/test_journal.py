"""The effect journal on every backend, through the sync and async APIs."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from memfold import InvalidInput, UnsupportedOperation, open_store
from memfold.backends.redis.checkpoint_keys import checkpoint_keys
from memfold.backends.redis.checkpoint_store import RedisCheckpointStore
from memfold.checkpoints import BaseCheckpointStore, Blob, RetentionPolicy
from memfold.journal import EffectJournal, ReplaceEffect, open_journal
from memfold.model import utcnow
from tests.support import (
    REDIS_URL,
    Api,
    drop_checkpoint_store,
    postgres_checkpoint_store,
    redis_checkpoint_store,
    tiered_checkpoint_store,
)

JOURNAL_BACKENDS = ["memory", "sqlite", "postgresql", "redis", "tiered"]
BODY = Blob("json", b"{}")


def make_journal(backend: str, tmp_path: Path) -> EffectJournal:
    """A fresh, set-up journal of ``backend``."""
    if backend == "memory":
        return open_journal("memory://")
    if backend == "sqlite":
        return open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    if backend == "postgresql":
        return EffectJournal(postgres_checkpoint_store())
    if backend == "tiered":
        return EffectJournal(tiered_checkpoint_store())
    return open_journal(REDIS_URL, key_prefix=f"memfold-test:{uuid.uuid4().hex}:")


def drop_journal(journal: EffectJournal) -> None:
    """Delete what a test journal left on its server."""
    drop_checkpoint_store(journal.store)  # type: ignore[arg-type]


@pytest.fixture(params=JOURNAL_BACKENDS)
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EffectJournal]:
    """A fresh journal of each backend."""
    found = make_journal(str(request.param), tmp_path)
    yield found
    await found.aclose()
    drop_journal(found)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, journal: EffectJournal) -> Api:
    """The journal driven through its sync or its async API."""
    return Api(journal, request.param == "async")  # type: ignore[arg-type]


async def test_a_recorded_call_is_returned_by_get(api: Api) -> None:
    """After record, get returns the result, its key and when it was recorded."""
    assert await api.get("t1", "call-1") is None
    before = utcnow()
    entry = await api.record("t1", "call-1", {"refund": 42, "items": ["a", "é"]})
    found = await api.get("t1", "call-1")
    assert found == entry
    assert found.result == {"refund": 42, "items": ["a", "é"]}
    assert (found.thread_id, found.namespace, found.tool_call_id) == ("t1", "", "call-1")
    assert before - timedelta(seconds=1) <= found.recorded_at <= utcnow() + timedelta(seconds=1)


async def test_recording_a_call_twice_keeps_the_first_result(api: Api) -> None:
    """A second record of the same key stores nothing and returns the first entry."""
    first = await api.record("t1", "call-1", "first")
    again = await api.record("t1", "call-1", "second")
    assert again == first
    assert again.result == "first"
    assert (await api.get("t1", "call-1")).result == "first"
    assert len(await api.list_entries("t1")) == 1


async def test_typed_bytes_round_trip(api: Api) -> None:
    """A Blob result comes back with its tag and exact bytes, NULs and colons included."""
    blob = Blob("msgpack+aes:v1", b"\x00:\xff\x01:")
    assert (await api.record("t1", "c", blob)).result == blob
    assert (await api.get("t1", "c")).result == blob
    assert (await api.get("t1", "c")).value == blob


async def test_replace_rewrites_only_a_recorded_call(journal: EffectJournal) -> None:
    """ReplaceEffect (key rotation) rewrites a recorded call's result, keeping its key and
    time, and records nothing for a call that is not recorded."""
    store = journal.store
    entry = journal.record("t1", "c1", "old", namespace="ns")
    blob = Blob("msgpack", b"\x00:\xff")
    assert store.execute(ReplaceEffect("default", "t1", "ns", "c1", blob)) is True
    assert journal.get("t1", "c1", namespace="ns") == replace(entry, value=blob)
    assert await store.aexecute(ReplaceEffect("default", "t1", "", "c1", blob)) is False
    assert journal.list_entries("t1") == [replace(entry, value=blob)]
    assert await store.aexecute(ReplaceEffect("default", "t2", "", "c1", blob)) is False
    assert journal.list_entries("t2") == []


async def test_an_entry_keeps_the_checkpoint_its_step_ran_from(
    api: Api, journal: EffectJournal
) -> None:
    """record stores ``origin``; get, list_entries and a key rotation's replace keep it; an entry
    recorded without one has ""."""
    entry = await api.record("t1", "c1", "done", namespace="tools:1", origin="ck:1@x")
    assert entry.origin == "ck:1@x"
    assert (await api.get("t1", "c1", namespace="tools:1")).origin == "ck:1@x"
    assert [e.origin for e in await api.list_entries("t1")] == ["ck:1@x"]
    assert (await api.record("t1", "c2", "done")).origin == ""
    blob = Blob("msgpack", b"\x00:@\xff")
    await journal.store.aexecute(ReplaceEffect("default", "t1", "tools:1", "c1", blob))
    assert await api.get("t1", "c1", namespace="tools:1") == replace(entry, value=blob)


async def test_recall_replays_an_attempt_whose_checkpoint_was_never_stored(
    api: Api, journal: EffectJournal
) -> None:
    """A step re-made after a crash lost its checkpoint runs its call under a new namespace and
    origin: recall returns the earlier attempt's result and records it under the new key; an
    attempt from a stored checkpoint is a fork, and is not replayed; nor are other nodes' calls,
    entries without an origin, or anything when no origin is given."""
    store = journal.store
    assert isinstance(store, BaseCheckpointStore)
    await api.record("t", "call-1", {"paid": 1}, namespace="tools:old", origin="lost")
    found = await api.recall("t", "call-1", namespace="tools:new", origin="new")
    assert (found.result, found.namespace, found.origin) == ({"paid": 1}, "tools:new", "new")
    assert (await api.get("t", "call-1", namespace="tools:new")) == found
    assert await api.recall("t", "call-1", namespace="tools:new") == found  # its own entry
    assert await api.recall("t", "call-1", namespace="tools:x") is None  # no origin: no search
    assert await api.recall("t", "call-1", namespace="other:x", origin="new") is None
    assert await api.recall("t", "call-2", namespace="tools:x", origin="new") is None

    store.put("t", "kept", BODY, namespace="agent:1")
    await api.record("t", "call-3", 3, namespace="agent:1|tools:a", origin="kept")
    assert await api.recall("t", "call-3", namespace="agent:1|tools:b", origin="fork") is None
    await api.record("t", "call-4", 4, namespace="agent:1|tools:a", origin="gone")
    redo = await api.recall("t", "call-4", namespace="agent:2|tools:b", origin="redo")
    assert redo.result == 4
    await api.record("t", "call-5", 5, namespace="tools:a")
    assert await api.recall("t", "call-5", namespace="tools:b", origin="new") is None
    assert {e.tool_call_id for e in await api.list_entries("t", namespace="tools:x")} == set()


async def test_recall_replays_a_subgraph_attempt_whose_enclosing_checkpoint_was_lost(
    api: Api, journal: EffectJournal
) -> None:
    """A tool in a subgraph: the crash lost the enclosing graph's checkpoint the subgraph ran
    from ("lost", named by the subgraph checkpoint's LangGraph ``parents`` metadata) while the
    subgraph's own checkpoint, the call's origin, was stored; the resumed run starts the
    subgraph under a new namespace, and recall replays the call. Once the enclosing checkpoint
    is stored, the same entry is a fork's, and is not replayed."""
    store = journal.store
    assert isinstance(store, BaseCheckpointStore)
    await store.aput("t", "s1", BODY, namespace="agent:1", metadata={"parents": {"": "lost"}})
    await api.record("t", "call-1", {"paid": 1}, namespace="agent:1|tools:a", origin="s1")
    redo = await api.recall("t", "call-1", namespace="agent:2|tools:b", origin="s2")
    assert (redo.result, redo.namespace) == ({"paid": 1}, "agent:2|tools:b")

    await store.aput("t", "kept", BODY)
    await store.aput("t", "s3", BODY, namespace="agent:3", metadata={"parents": {"": "kept"}})
    await api.record("t", "call-2", 2, namespace="agent:3|tools:a", origin="s3")
    assert await api.recall("t", "call-2", namespace="agent:4|tools:b", origin="s4") is None


async def test_recall_runs_a_call_again_once_its_run_went_on(
    api: Api, journal: EffectJournal
) -> None:
    """An entry whose origin was never stored is no crashed attempt when the root graph stored
    a checkpoint newer than that origin that is not one of the calling run's own: that run
    finished (as with durability="exit", which stores none of its steps), and the call reuses
    the call id. Older checkpoints written after the entry (durability="async" writes them in
    the background while the tools run) do not count."""
    store = journal.store
    assert isinstance(store, BaseCheckpointStore)
    await api.record("t", "call-1", 1, namespace="tools:a", origin="ck-2")
    store.put("t", "ck-1", BODY)  # older than the origin, written late
    store.put("t", "ck-3", BODY)  # the calling run's own checkpoint: a crash, replayed
    found = await api.recall("t", "call-1", namespace="tools:b", origin="ck-3", running=["ck-3"])
    assert found.result == 1
    await api.record("t", "call-2", 2, namespace="tools:a", origin="ck-4")
    store.put("t", "ck-5", BODY)  # made after the origin by the run that recorded it
    assert await api.recall("t", "call-2", namespace="tools:c", origin="c", running=["c"]) is None
    assert await api.recall("t", "call-2", namespace="tools:c", origin="c") is None


async def test_keys_are_isolated_by_tenant_thread_and_namespace(api: Api) -> None:
    """The same tool call id in another tenant, thread or namespace is another entry."""
    await api.record("t1", "c", 1)
    await api.record("t1", "c", 2, tenant="other")
    await api.record("t2", "c", 3)
    await api.record("t1", "c", 4, namespace="tools:abc|x:1")
    assert (await api.get("t1", "c")).result == 1
    assert (await api.get("t1", "c", tenant="other")).result == 2
    assert (await api.get("t2", "c")).result == 3
    assert (await api.get("t1", "c", namespace="tools:abc|x:1")).result == 4
    assert await api.get("t1", "c", tenant="nobody") is None
    assert await api.get("t1", "c", namespace="tools:other") is None


async def test_list_entries_in_recording_order_and_by_namespace(api: Api) -> None:
    """A thread's entries list oldest first; a namespace narrows the list."""
    for i, (namespace, call) in enumerate([("", "z"), ("n:1", "a"), ("", "m")]):
        await api.record("t1", call, i, namespace=namespace)
    await api.record("t2", "other", 9)
    entries = await api.list_entries("t1")
    assert [(e.namespace, e.tool_call_id, e.result) for e in entries] == [
        ("", "z", 0),
        ("n:1", "a", 1),
        ("", "m", 2),
    ]
    assert [e.tool_call_id for e in await api.list_entries("t1", namespace="")] == ["z", "m"]
    assert [e.tool_call_id for e in await api.list_entries("t1", namespace="n:1")] == ["a"]
    assert await api.list_entries("nobody") == []


async def test_delete_thread_removes_only_that_threads_journal(api: Api) -> None:
    """Deleting a thread's journal removes its entries (every namespace) and nothing else."""
    await api.record("t1", "a", 1)
    await api.record("t1", "b", 2, namespace="n")
    await api.record("t2", "a", 3)
    await api.record("t1", "a", 4, tenant="other")
    assert await api.delete_thread("t1") == 2
    assert await api.list_entries("t1") == []
    assert await api.get("t1", "a") is None
    assert (await api.get("t2", "a")).result == 3
    assert (await api.get("t1", "a", tenant="other")).result == 4
    assert await api.delete_thread("t1") == 0


async def test_list_threads_names_every_thread_with_a_journal(api: Api) -> None:
    """The tenant's threads with a journal, sorted, whatever their ids hold (Redis finds them by
    their keys: a journal's thread may have no checkpoint); emptied journals drop out."""
    odd = ["t:1", "{b}", "a*b", "ü", "t%3A1"]
    for thread_id in odd:
        await api.record(thread_id, "c", 1)
    await api.record("mine", "c", 1, tenant="other")
    assert await api.list_threads() == sorted(odd)
    assert await api.list_threads(tenant="other") == ["mine"]
    assert await api.list_threads(tenant="nobody") == []
    await api.delete_thread("t:1")
    assert await api.list_threads() == sorted(set(odd) - {"t:1"})


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: a.record("", "c", 1), "thread id"),
        (lambda a: a.record("t", 7, 1), "tool call id"),
        (lambda a: a.record("t", "c", 1, tenant=""), "tenant"),
        (lambda a: a.record("t", "c", 1, namespace=3), "namespace"),
        (lambda a: a.record("t", "c", float("nan")), "JSON"),
        (lambda a: a.record("t", "c", object()), "JSON"),
        (lambda a: a.record("t", "c", Blob("", b"x")), "tag"),
        (lambda a: a.record("t", "c", Blob("json", "text")), "bytes"),  # type: ignore[arg-type]
        (lambda a: a.get("t", "x" * 600), "limit"),
        (lambda a: a.list_entries("t", namespace="\x00"), "NUL"),
        (lambda a: a.record("t", "c", 1, origin=5), "origin"),
        (lambda a: a.recall("t", "c", origin="\x00"), "NUL"),
        (lambda a: a.recall("t", "c", origin="o", running="abc"), "running"),
    ],
)
async def test_bad_input_is_refused(api: Api, call: Any, match: str) -> None:
    """Malformed ids, namespaces and results raise InvalidInput and store nothing."""
    with pytest.raises(InvalidInput, match=match):
        await call(api)
    assert await api.list_entries("t") == []


async def test_concurrent_records_of_one_call_agree(journal: EffectJournal) -> None:
    """Eight threads record one key at once with different results: all get the same one."""
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def record(i: int) -> None:
        barrier.wait()
        results.append(journal.record("t", "race", i).result)

    workers = [threading.Thread(target=record, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    assert journal.get("t", "race").result == results[0]  # type: ignore[union-attr]


def test_a_store_without_a_journal_is_refused() -> None:
    """A thread store has no journal: EffectJournal says so with UnsupportedOperation."""
    with pytest.raises(UnsupportedOperation, match="effect journal"):
        EffectJournal(open_store("memory://"))
    with pytest.raises(InvalidInput, match="memfold store"):
        EffectJournal("memory://")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", JOURNAL_BACKENDS)
async def test_deleting_checkpoint_threads_deletes_their_journal(
    backend: str, tmp_path: Path
) -> None:
    """delete_thread, prune(strategy="delete") and a TTL sweep of the checkpoint store remove
    the thread's journal with it; other threads keep theirs."""
    journal = make_journal(backend, tmp_path)
    store = journal.store
    assert isinstance(store, BaseCheckpointStore)
    try:
        for thread in ("deleted", "pruned", "expired", "kept"):
            store.put(thread, "c1", BODY)
            journal.record(thread, "call", thread)
        assert store.delete_thread("deleted") == 1
        assert await store.aprune(["pruned"], strategy="delete") == 1
        store.set_thread_ttl("expired", 0.001)
        await asyncio.sleep(0.01)
        # Redis expires the thread's keys, its journal among them, before the sweep looks.
        assert store.sweep(RetentionPolicy()).threads == (0 if backend == "redis" else 1)
        assert [t for t in ("deleted", "pruned", "expired") if journal.get(t, "call")] == []
        assert journal.get("kept", "call").result == "kept"  # type: ignore[union-attr]
    finally:
        await journal.aclose()
        drop_checkpoint_store(store)


@pytest.mark.parametrize("backend", JOURNAL_BACKENDS)
async def test_copy_thread_copies_the_journal(backend: str, tmp_path: Path) -> None:
    """copy_thread gives the target the source's journal (every namespace, same results, times
    and origins, replacing what the target held), so the copy replays its tools' calls; the two
    journals then change independently."""
    journal = make_journal(backend, tmp_path)
    store = journal.store
    assert isinstance(store, BaseCheckpointStore)
    try:
        await store.aput("src", "c1", BODY)
        recorded = [
            journal.record("src", "a", {"n": 1}),
            journal.record("src", "b", 2, namespace="x", origin="c1"),
        ]
        journal.record("dst", "stale", "dropped by the copy")
        journal.record("src", "a", 9, tenant="other")
        assert await store.acopy_thread("src", "dst") == 1
        copied = await journal.alist_entries("dst")
        assert [replace(e, thread_id="src") for e in copied] == recorded
        assert {e.thread_id for e in copied} == {"dst"}
        assert (await journal.aget("dst", "a")).result == {"n": 1}  # type: ignore[union-attr]
        assert journal.record("dst", "a", "again").result == {"n": 1}
        journal.record("dst", "c", 3)
        assert journal.get("src", "c") is None
        assert journal.delete_thread("src") == 2
        assert len(journal.list_entries("dst")) == 3
        assert journal.get("dst", "a", tenant="other") is None
    finally:
        await journal.aclose()
        drop_checkpoint_store(store)


async def test_a_redis_journal_expires_with_its_thread() -> None:
    """On Redis a thread's journal is one of its keys: a record takes the thread's expiry (or
    the default TTL before the first checkpoint), and TTL changes and writes carry it along."""
    store = redis_checkpoint_store(retention=RetentionPolicy(ttl_seconds=60))
    assert isinstance(store, RedisCheckpointStore)
    journal, client = EffectJournal(store), store.client

    def pttl(thread_id: str, key: str = "journal") -> int:
        found: int = client.pttl(
            getattr(checkpoint_keys(store.key_prefix, "default", thread_id), key)
        )
        return found

    try:
        await journal.arecord("early", "c", 1)  # no checkpoint yet: the default TTL
        assert 59_000 < pttl("early") <= 60_000
        store.put("t", "c1", BODY)
        store.set_thread_ttl("t", 30)
        journal.record("t", "c", 1)
        assert 29_000 < pttl("t") <= 30_000
        assert abs(pttl("t") - pttl("t", "info")) < 1_000
        store.set_thread_ttl("t", None)  # back to the default
        assert 59_000 < pttl("t") <= 60_000
        client.pexpire(checkpoint_keys(store.key_prefix, "default", "t").journal, 5_000)
        store.put("t", "c2", BODY, parent_id="c1")  # a write refreshes every key of the thread
        assert 59_000 < pttl("t") <= 60_000
        assert journal.get("t", "c") is not None
    finally:
        await journal.aclose()
        drop_checkpoint_store(store)
