"""Export then import into an empty store of another backend gives identical data, times
included, for every store kind (the records of `tests.unit.test_export.fill`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from memfold.checkpoints import Blob
from memfold.errors import NotFound
from memfold.export import aexport_data, export_data
from memfold.export_format import Counts
from memfold.importer import aimport_data, import_data
from memfold.memories import BaseMemoryStore, MemoryRecord
from memfold.migrate import amigrate, migrate
from memfold.open import AnyStore
from memfold.recall.embedders import HashingEmbedder
from memfold.stores import BaseThreadStore
from tests.backends.test_checkpoints import make_checkpoint_store
from tests.backends.test_restore import open_memories
from tests.support import drop_checkpoint_store, drop_store, make_store
from tests.unit.test_export import (
    CHECKPOINT_TTLS,
    DAY,
    T0,
    T_ACME,
    Stores,
    everything,
    fill,
    memories_of,
    ttl_checkpoint_threads,
    ttl_threads,
)
from tests.unit.test_migrate import history, run_graph


def open_stores(backend: str, memory_backend: str, tmp_path: Path) -> Stores:
    """A fresh store of each kind: threads and checkpoints on ``backend``, memories on
    ``memory_backend`` (files under their own directory in ``tmp_path``)."""
    where = tmp_path / f"{backend}-{memory_backend}"
    where.mkdir(exist_ok=True)
    memories = open_memories(memory_backend, where, embedder=HashingEmbedder(16))
    return make_store(backend, where), make_checkpoint_store(backend, where), memories


@pytest.fixture
def made() -> Iterator[list[AnyStore]]:
    """Stores a test makes, dropped (their schema or keys) and closed after it."""
    found: list[AnyStore] = []
    yield found
    for store in found:
        if isinstance(store, BaseThreadStore):
            drop_store(store)
        else:
            drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops a schema or keys
        store.close()


PAIRS = [
    ("memory", "sqlite"),
    ("sqlite", "postgresql"),
    ("postgresql", "redis"),
    ("redis", "tiered"),
]


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_threads_and_checkpoints_round_trip_across_backends(
    source: str, target: str, tmp_path: Path, made: list[Stores]
) -> None:
    """Threads with their messages and times, checkpoints with values, writes and times, and
    journal entries arrive identical."""
    src = open_stores(source, "memory", tmp_path)
    made += src
    fill(src)
    out = io.StringIO()
    counts = export_data(list(src[:2]), out, tenant=T_ACME)
    assert counts == Counts(threads=2, messages=4, checkpoints=6, journal_entries=2)
    out.seek(0)
    dst = open_stores(target, "memory", tmp_path)
    made += dst
    assert import_data(list(dst[:2]), out) == counts
    want, got = everything(src), everything(dst)
    for kind in ("threads", "checkpoints", "journal"):
        assert got[kind] == want[kind], kind


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_a_threads_own_ttl_survives_export_import_and_migrate(
    source: str, target: str, tmp_path: Path, made: list[Stores]
) -> None:
    """A thread's own TTL arrives by import and by migrate, still counted from the thread's
    last write: the target's sweep removes the thread past it, as the source's would."""
    src = open_stores(source, "memory", tmp_path)
    made += src
    ttl_threads(src[0])
    out = io.StringIO()
    export_data(src[0], out)
    out.seek(0)
    dst = open_stores(target, "memory", tmp_path)
    made += dst
    import_data(dst[0], out)
    (tmp_path / "again").mkdir()
    again = open_stores(target, "memory", tmp_path / "again")
    made += again
    assert migrate(src[0], again[0]).threads_moved == 3
    assert migrate(src[0], again[0]).threads_moved == 0
    want = {"gone": 3600.0, "kept": 1e6, "plain": None}
    for store in (src[0], dst[0], again[0]):
        assert {t: store.get_thread_ttl(t) for t in want} == want
    assert src[0].set_thread_ttl("kept", None)
    assert migrate(src[0], again[0]).threads_moved == 1  # a changed TTL is copied
    assert again[0].get_thread_ttl("kept") is None
    for store in (dst[0], again[0]):
        assert store.sweep().threads == 1
        assert sorted(i.thread_id for i in store.list_threads()) == ["kept", "plain"]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
async def test_a_checkpoint_threads_own_ttl_survives_export_import_and_migrate(
    source: str, target: str, use_async: bool, tmp_path: Path, made: list[Stores]
) -> None:
    """A checkpoint thread's own TTL arrives by import and by migrate, still counted from the
    thread's last write: the target's sweep removes the thread past it, as the source's would;
    a migration run again moves and changes nothing, and copies a changed TTL."""
    src = open_stores(source, "memory", tmp_path)
    made += src
    ttl_checkpoint_threads(src[1])
    out = io.StringIO()
    await aexport_data(src[1], out) if use_async else export_data(src[1], out)
    out.seek(0)
    dst = open_stores(target, "memory", tmp_path)
    made += dst
    await aimport_data(dst[1], out) if use_async else import_data(dst[1], out)
    (tmp_path / "again").mkdir()
    again = open_stores(target, "memory", tmp_path / "again")
    made += again

    async def copy() -> int:
        done = await amigrate(src[1], again[1]) if use_async else migrate(src[1], again[1])
        assert done.failed == {}
        return done.checkpoints_moved + done.journal_entries_moved

    assert await copy() == 5
    for store in (src[1], dst[1], again[1]):
        assert {t: store.get_thread_ttl(t) for t in CHECKPOINT_TTLS} == CHECKPOINT_TTLS
    assert await copy() == 0
    assert src[1].set_thread_ttl("kept", None)
    assert src[1].set_thread_ttl("plain", 7200)
    assert await copy() == 0
    assert [again[1].get_thread_ttl(t) for t in ("kept", "plain")] == [None, 7200.0]
    for store in (dst[1], again[1]):
        assert store.sweep().threads == 1
        assert {c.thread_id for c in store.list_checkpoints()} == {"kept", "plain"}


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_named_threads_held_by_one_store_kind_export_and_migrate_from_it(
    source: str, target: str, tmp_path: Path, made: list[Stores]
) -> None:
    """A named thread only the checkpoint store holds (a LangGraph run) is exported and
    migrated with its checkpoints, one only the thread store holds with its messages; a name
    in none of the stores given fails."""
    src = open_stores(source, "memory", tmp_path)
    made += src
    fill(src)
    out = io.StringIO()
    named = ["graph-ann", "chat-bob"]
    counts = export_data(list(src[:2]), out, tenant=T_ACME, thread_ids=named)
    assert counts == Counts(threads=1, messages=2, checkpoints=3, journal_entries=1)
    out.seek(0)
    dst = open_stores(target, "memory", tmp_path)
    made += dst
    assert import_data(list(dst[:2]), out) == counts
    want, got = everything(src), everything(dst)
    assert got["threads"] == [t for t in want["threads"] if t[0].thread_id == "chat-bob"]
    assert got["checkpoints"] == [c for c in want["checkpoints"] if c.thread_id == "graph-ann"]
    with pytest.raises(NotFound, match="nope"):
        export_data(list(src[:2]), io.StringIO(), tenant=T_ACME, thread_ids=["graph-ann", "nope"])
    with pytest.raises(NotFound, match="graph-ann"):  # the checkpoints are not exported
        export_data(list(src[:2]), io.StringIO(), kinds=["threads"], thread_ids=["graph-ann"])
    (tmp_path / "again").mkdir()
    again = open_stores(target, "memory", tmp_path / "again")
    made += again
    names = ["graph-bob", "chat-ann", "nope"]
    moved = migrate(src[1], again[1], tenant=T_ACME, thread_ids=names)
    assert (moved.checkpoints_moved, moved.journal_entries_moved) == (3, 1)
    assert set(moved.failed) == {"chat-ann", "nope"}  # in no checkpoint store: not moved
    assert "none of the source" in moved.failed["nope"]
    moved = migrate(src[0], again[0], tenant=T_ACME, thread_ids=names)
    assert (moved.threads_moved, moved.messages_moved) == (1, 2)
    assert set(moved.failed) == {"graph-bob", "nope"}


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_a_fork_sibling_without_a_value_stays_without_one(
    source: str, target: str, tmp_path: Path, made: list[Stores]
) -> None:
    """Two children of one checkpoint share a channel version (as LangGraph's forks do), one
    with no value: after export and import, and after a migration, it still has none (it read
    its sibling's value, so LangGraph would have run a finished branch again)."""
    body, branch = Blob("json", b"{}"), Blob("json", b'"to b"')
    for side in ("src", "imported", "migrated"):
        (tmp_path / side).mkdir()
    src = make_checkpoint_store(source, tmp_path / "src")
    made.append(src)
    src.put("t", "c1", body, versions={"ch": 1}, values={"ch": Blob("json", b'"v1"')})
    src.put("t", "c2a", body, parent_id="c1", versions={"ch": 2}, values={"ch": None})
    src.put("t", "c2b", body, parent_id="c1", versions={"ch": 2}, values={"ch": branch})
    out = io.StringIO()
    export_data(src, out)
    out.seek(0)
    imported = make_checkpoint_store(target, tmp_path / "imported")
    migrated = make_checkpoint_store(target, tmp_path / "migrated")
    made += [imported, migrated]
    import_data(imported, out)
    migrate(src, migrated)
    for store in (src, imported, migrated):
        assert store.get("t", checkpoint_id="c2a").values == {}  # type: ignore[union-attr]
        assert store.get("t", checkpoint_id="c2b").values == {"ch": branch}  # type: ignore[union-attr]


MEMORY_PAIRS = [
    ("memory", "sqlite"),
    ("sqlite", "chroma"),
    ("chroma", "postgresql"),
    ("postgresql", "redis"),
]


def records(store: BaseMemoryStore) -> list[MemoryRecord]:
    return store.list_records((T_ACME,), limit=1000, include_embedding=True)


@pytest.mark.parametrize(
    ("source", "target"), MEMORY_PAIRS, ids=[f"{a}-{b}" for a, b in MEMORY_PAIRS]
)
async def test_memories_round_trip_across_backends(
    source: str, target: str, tmp_path: Path, made: list[Stores]
) -> None:
    """Memories and key-value entries arrive with their times, expiry, vectors and models
    (through the async twins); Redis, without vector search, gets them without vectors."""
    for side in ("src", "dst"):
        (tmp_path / side).mkdir()
    src = open_memories(source, tmp_path / "src", embedder=HashingEmbedder(16))
    dst = open_memories(target, tmp_path / "dst", embedder=HashingEmbedder(16))
    made += [src, dst]
    for offset, user in enumerate(("ann", "bob")):
        src.restore_many(memories_of(user, T0 + offset * DAY))
    out = io.StringIO()
    assert (await aexport_data(src, out, tenant=T_ACME)).memories == 6
    out.seek(0)
    assert (await aimport_data(dst, out)).memories == 6
    want = records(src)
    if not dst.capabilities.vector_search:
        want = [replace(r, embedding=None, embedding_model=None) for r in want]
    assert records(dst) == want


def test_langgraph_history_survives_sqlite_to_postgresql(
    tmp_path: Path, made: list[Stores]
) -> None:
    """A real LangGraph run (with a pending write from a failed step and a journal entry),
    exported from SQLite and imported into PostgreSQL, gives the same state history."""
    src = open_stores("sqlite", "memory", tmp_path)
    dst = open_stores("postgresql", "memory", tmp_path)
    made += [*src, *dst]
    before = run_graph(src[1])
    out = io.StringIO()
    counts = export_data(src[1], out)
    assert (counts.checkpoints, counts.journal_entries) == (sum(map(len, before)), 1)
    out.seek(0)
    import_data(dst[1], out)
    assert history(dst[1]) == before
    assert dst[1].list_checkpoints() == src[1].list_checkpoints()
