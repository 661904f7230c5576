"""`memfold.erase` on every backend: one user's threads, checkpoints (pending writes, delta rows,
leases), journal, memories, key-value entries, compaction records and caches go, everywhere,
raw storage included; another user's stay; late writes are refused; dry runs and repeats.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memfold import Erased, InvalidInput, Message, Subject, aerase, alift_erasure, erase
from memfold import lift_erasure as lift
from memfold.checkpoints import BaseCheckpointStore, Blob, Lease, PendingWrite, SequenceBlob
from memfold.compaction import ApproximateCounter, Compactor, RunningSummary
from memfold.compaction.compactor import RECORD_KEY
from memfold.journal import EffectJournal
from memfold.memories import BaseMemoryStore, open_memory_store
from memfold.memory_model import MemoryRecord
from memfold.recall.embedders import CachedEmbedder, HashingEmbedder
from memfold.stores import BaseThreadStore
from memfold.tombstones import ErasureCounts
from tests.support import (
    MEMORY_DIMS,
    PG_URL,
    REDIS_URL,
    drop_checkpoint_store,
    drop_store,
    make_store,
    postgres_checkpoint_store,
    redis_checkpoint_store,
)

ERASE_BACKENDS = ["memory", "sqlite", "postgresql", "redis", "tiered", "chroma"]
TENANT = "acme"
ANN, BOB = "ann", "bob"
SECRET = "annsecret"
"""Every piece of Ann's content carries this marker; none may be left anywhere after erase."""
ANN_THREADS = ("ann-chat", "ann-graph", "ann-tools")


@dataclass
class World:
    """One backend's thread, checkpoint and memory stores, and a reader of their raw storage."""

    threads: BaseThreadStore
    checkpoints: BaseCheckpointStore
    memories: BaseMemoryStore
    raw: Callable[[], list[tuple[str, bytes]]]
    """Every stored item as ``(where, bytes)``: table rows, Redis keys and values, dict state."""
    tombstone_places: tuple[str, ...] = ()
    """Where tombstones live (they keep thread ids and the user id, by design): their table,
    Redis hash, or the database file holding that table."""
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    hot: Callable[[], list[tuple[str, bytes]]] | None = None
    """A tiered world's reader of the Redis keys alone (the hot copies)."""

    @property
    def journal(self) -> EffectJournal:
        return EffectJournal(self.checkpoints)

    @property
    def stores(self) -> list[Any]:
        return [self.threads, self.checkpoints, self.journal, self.memories]


def _sqlite_raw(path: Path) -> Callable[[], list[tuple[str, bytes]]]:
    def read() -> list[tuple[str, bytes]]:
        found = []
        with sqlite3.connect(path) as conn:
            tables = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for table in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"'):  # test names
                    found.append((table, repr(row).encode()))
        for file in path.parent.glob(path.name + "*"):  # the database, its WAL and SHM
            found.append((file.name, file.read_bytes()))
        return found

    return read


def _postgres_raw(schema: str) -> Callable[[], list[tuple[str, bytes]]]:
    def read() -> list[tuple[str, bytes]]:
        import psycopg
        from psycopg import sql

        found = []
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchall()
            for (table,) in tables:
                query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                for (row,) in conn.execute(query):
                    # bytea shows as hex: decode it so markers in blobs are found too
                    found.append((table, row.encode() + _unhex(row)))
        return found

    return read


def _unhex(text: str) -> bytes:
    out = b""
    for part in text.split("\\\\x")[1:]:
        digits = part.split(",")[0].split(")")[0].strip('"')
        with contextlib.suppress(ValueError):
            out += bytes.fromhex(digits)
    return out


def _redis_raw(prefix: str) -> Callable[[], list[tuple[str, bytes]]]:
    def read() -> list[tuple[str, bytes]]:
        import redis

        found: list[tuple[str, bytes]] = []
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                kind = client.type(key).decode()
                name = key.decode(errors="replace")
                if kind == "string":
                    items = [client.get(key) or b""]
                elif kind == "list":
                    items = client.lrange(key, 0, -1)
                elif kind == "hash":
                    items = [k + b"=" + v for k, v in client.hgetall(key).items()]
                elif kind == "set":
                    items = list(client.smembers(key))
                else:
                    items = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
                found.append((name, key))
                found += [(name, item) for item in items]
        finally:
            client.close()
        return found

    return read


def _memory_raw(*stores: Any) -> Callable[[], list[tuple[str, bytes]]]:
    def read() -> list[tuple[str, bytes]]:
        found = []
        for store in stores:
            for name, value in vars(store).items():
                if name != "_tombstones":
                    found.append((f"{type(store).__name__}.{name}", repr(value).encode()))
        return found

    return read


def make_world(backend: str, tmp_path: Path) -> World:
    """Fresh stores of ``backend`` (chroma: memories on Chroma, the rest on SQLite)."""
    embedder = CachedEmbedder(HashingEmbedder(MEMORY_DIMS))
    if backend == "memory":
        threads = make_store("memory", tmp_path)
        checkpoints = open_checkpoint("memory://")
        memories = open_memory_store("memory://", embedder=embedder)
        raw = _memory_raw(threads, checkpoints, checkpoints._journal, memories)  # type: ignore[attr-defined]
        return World(threads, checkpoints, memories, raw)
    if backend in ("sqlite", "chroma"):
        path = tmp_path / "memfold.db"
        threads = make_store("sqlite", tmp_path)
        checkpoints = open_checkpoint(f"sqlite:///{path}")
        if backend == "chroma":
            memories = open_memory_store(f"chroma://{tmp_path / 'chroma'}", embedder=embedder)
            sql = _sqlite_raw(path)

            def raw() -> list[tuple[str, bytes]]:
                return sql() + _chroma_raw(memories)

            return World(threads, checkpoints, memories, raw, ("memfold_tombstones", "memfold.db"))
        memories = open_memory_store(f"sqlite:///{path}", embedder=embedder)
        return World(
            threads, checkpoints, memories, _sqlite_raw(path), ("memfold_tombstones", "memfold.db")
        )
    if backend == "postgresql":
        schema = f"memfold_test_{uuid.uuid4().hex}"
        threads = make_store("postgresql", tmp_path, schema=schema)
        checkpoints = postgres_checkpoint_store(schema=schema)
        memories = open_memory_store(PG_URL, schema=schema, embedder=embedder)
        world = World(
            threads, checkpoints, memories, _postgres_raw(schema), ("memfold_tombstones",)
        )
        world.cleanup.append(lambda: drop_store(threads))
        return world
    if backend == "redis":
        prefix = f"memfold-test:{uuid.uuid4().hex}:"
        threads = make_store("redis", tmp_path, key_prefix=prefix)
        checkpoints = redis_checkpoint_store(key_prefix=prefix)
        memories = open_memory_store(REDIS_URL, key_prefix=prefix, embedder=embedder)
        world = World(threads, checkpoints, memories, _redis_raw(prefix), (":erased",))
        world.cleanup.append(lambda: drop_store(threads))
        return world
    # tiered: Redis in front of PostgreSQL for threads and checkpoints, one prefix and schema
    from memfold.backends.redis.checkpoint_store import RedisCheckpointStore
    from memfold.backends.tiered import TieredThreadStore
    from memfold.backends.tiered_checkpoints import TieredCheckpointStore
    from tests.support import postgres_store, redis_store

    schema, prefix = f"memfold_test_{uuid.uuid4().hex}", f"memfold-test:{uuid.uuid4().hex}:"
    threads = TieredThreadStore(redis_store(key_prefix=prefix), postgres_store(schema=schema))
    threads.setup()
    hot = redis_checkpoint_store(key_prefix=prefix)
    assert isinstance(hot, RedisCheckpointStore)
    checkpoints = TieredCheckpointStore(hot, postgres_checkpoint_store(schema=schema))
    memories = open_memory_store(PG_URL, schema=schema, embedder=embedder)
    pg, rd = _postgres_raw(schema), _redis_raw(prefix)
    world = World(
        threads, checkpoints, memories, lambda: pg() + rd(), ("memfold_tombstones", ":erased")
    )
    world.cleanup.append(lambda: drop_store(threads))
    world.hot = rd
    return world


def _chroma_raw(store: BaseMemoryStore) -> list[tuple[str, bytes]]:
    found = []
    client = store._client  # type: ignore[attr-defined]
    for collection in client.list_collections():
        got = collection.get(include=["documents", "metadatas"])
        for row in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False):
            found.append((f"chroma:{collection.name}", repr(row).encode()))
    return found


def open_checkpoint(url: str) -> BaseCheckpointStore:
    from memfold.checkpoints import open_checkpoint_store

    return open_checkpoint_store(url)


@pytest.fixture(params=ERASE_BACKENDS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """Ann's and Bob's data on one backend."""
    found = make_world(str(request.param), tmp_path)
    yield found
    for store in (found.threads, found.memories, found.checkpoints):
        await store.aclose()
    drop_checkpoint_store(found.checkpoints)
    drop_checkpoint_store(found.memories)  # type: ignore[arg-type]  # keys and schemas
    for step in found.cleanup:
        step()


def fill(world: World, user: str, marker: str) -> tuple[str, ...]:
    """Write ``user``'s data into every store kind; returns the user's thread ids."""
    threads, cps, memories = world.threads, world.checkpoints, world.memories
    chat, graph, tools = f"{user}-chat", f"{user}-graph", f"{user}-tools"
    # A chat thread with metadata naming the user, and a compaction record in its metadata.
    threads.append(
        chat,
        [
            Message(
                role="user" if i % 2 == 0 else "assistant",
                content=f"{marker} message {i}: my card is 4111 and I live on Elm Street.",
            )
            for i in range(40)
        ],
        tenant=TENANT,
    )
    threads.set_thread_metadata(chat, {"user_id": user, "title": f"{marker} title"}, tenant=TENANT)
    compactor = Compactor(threads, RunningSummary(120, counter=ApproximateCounter()))
    compactor.view(chat, tenant=TENANT)
    assert RECORD_KEY in threads.get_thread(chat, tenant=TENANT).metadata
    # Checkpoints of the same chat thread and of a graph-only thread, with a growing list
    # (stored as deltas), pending writes, a lease and journal entries; LangGraph puts the
    # user id from configurable into each checkpoint's metadata.
    lease = Lease(f"{user}-worker", 60)
    for thread_id in (chat, graph):
        items: tuple[bytes, ...] = ()
        parent = None
        for step in range(4):
            items = (*items, f'"{marker} step {step}"'.encode())
            cid = f"c{step}"
            cps.put(
                thread_id, cid, Blob("json", f'{{"note": "{marker}"}}'.encode()),
                parent_id=parent, metadata={"user_id": user, "step": step, "note": marker},
                versions={"messages": step + 1},
                values={"messages": SequenceBlob("json", items)},
                lease=lease, tenant=TENANT,
            )  # fmt: skip
            parent = cid
        cps.put_writes(
            thread_id, parent or "",
            [PendingWrite("task-1", 0, "messages", Blob("json", f'"{marker} pending"'.encode()))],
            lease=lease, tenant=TENANT,
        )  # fmt: skip
        world.journal.record(thread_id, "call-1", {"refund": marker}, tenant=TENANT)
    # A thread known only by its journal (named explicitly when erasing).
    world.journal.record(tools, "call-9", {"email": marker}, tenant=TENANT)
    # Long-term memories and key-value entries under (tenant, user, ...).
    memories.put((TENANT, user, "prefs"), f"{marker}: prefers green tea", {"kind": "pref"})
    memories.put((TENANT, user, "prefs"), f"{marker}: allergic to nuts", {"kind": "health"})
    memories.put_many(
        [MemoryRecord((TENANT, user, "kv"), f"k{i}", "", {"v": f"{marker} {i}"}) for i in range(3)]
    )
    if memories.capabilities.vector_search:
        memories.search((TENANT, user), f"{marker} tea", k=2)  # fills the embedding cache
    else:  # the store embeds nothing, but the application may have: the cache still goes
        memories.embedder.embed([f"{marker} tea"], kind="query")
    if threads.capabilities.full_text_search:
        threads.search(marker, tenant=TENANT)  # brings the full-text index up to date
    return chat, graph, tools


def snapshot(world: World, user: str) -> dict[str, Any]:
    """What the public APIs show of ``user``'s data."""
    threads, cps, memories = world.threads, world.checkpoints, world.memories
    chat, graph, tools = f"{user}-chat", f"{user}-graph", f"{user}-tools"
    listed = threads.list_threads(tenant=TENANT, limit=100)
    return {
        "threads": sorted(t.thread_id for t in listed if t.thread_id.startswith(user)),
        "messages": [m.content for m in threads.load(chat, tenant=TENANT)],
        "metadata": [t.metadata for t in listed if t.thread_id == chat],
        "checkpoints": [
            (c.thread_id, c.checkpoint_id, c.values, c.writes)
            for t in (chat, graph)
            for c in cps.list_checkpoints(t, tenant=TENANT)
        ],
        "journal": [
            e.result
            for t in (chat, graph, tools)
            for e in world.journal.list_entries(t, tenant=TENANT)
        ],
        "memories": sorted(r.text + repr(r.value) for r in memories.list_records((TENANT, user))),
    }


def leftovers(world: World, needle: str, *, skip_tombstones: bool = False) -> list[str]:
    """Places in raw storage that still hold ``needle``."""
    found = []
    for where, data in world.raw():
        if skip_tombstones and any(place in where for place in world.tombstone_places):
            continue
        if needle.encode() in data:
            found.append(where)
    return sorted(set(found))


async def test_erase_removes_one_user_everywhere_and_keeps_the_other(world: World) -> None:
    """Ann's data goes from every store kind, raw storage and caches included; Bob's stays."""
    fill(world, ANN, SECRET)
    fill(world, BOB, "bob-keeps")
    bob_before = snapshot(world, BOB)
    assert leftovers(world, SECRET)  # the raw readers see the data they must later miss
    if world.hot is not None:  # and a tiered world's Redis holds hot copies of it
        assert any(SECRET.encode() in data for _, data in world.hot())
    cache = world.memories.embedder
    assert isinstance(cache, CachedEmbedder)
    assert cache.cache_size > 0
    parsed = getattr(getattr(world.checkpoints, "_plans", None), "parsed", None)
    snapshot(world, ANN)  # a SQL store keeps the value rows it read parsed

    report = erase(Subject(TENANT, ANN, thread_ids=(f"{ANN}-tools",)), world.stores)

    assert parsed is None or len(parsed) == 0
    heads = getattr(world.checkpoints, "_heads", None)  # what a SQL store remembers of its puts
    assert heads is None or all(heads.get(TENANT, t, "") == (None, None) for t in ANN_THREADS)

    assert sorted(report.thread_ids) == sorted(ANN_THREADS)
    counts = report.counts
    assert (counts.threads, counts.messages) == (1, 40)
    assert (counts.checkpoint_threads, counts.checkpoints) == (2, 8)
    assert counts.checkpoint_writes == 2
    assert counts.checkpoint_blobs >= 2  # one snapshot row per thread at least; deltas on top
    assert counts.journal_entries == 3
    assert counts.memories == 5
    assert counts.cache_entries > 0
    assert cache.cache_size == 0
    assert report.tombstones > 0
    assert not report.dry_run
    assert snapshot(world, ANN) == {
        "threads": [], "messages": [], "metadata": [], "checkpoints": [], "journal": [],
        "memories": [],
    }  # fmt: skip
    assert snapshot(world, BOB) == bob_before
    assert leftovers(world, SECRET) == []
    for thread_id in ANN_THREADS:
        assert leftovers(world, thread_id, skip_tombstones=True) == []
    assert leftovers(world, "bob-keeps")


async def test_late_writes_are_refused_on_every_store_kind(world: World) -> None:
    """After erase, a write to an erased thread or namespace raises Erased (sync and async);
    Bob's writes and brand-new threads still go through; lifting lets Ann write again."""
    chat, graph, tools = fill(world, ANN, SECRET)
    fill(world, BOB, "bob-keeps")
    await aerase(Subject(TENANT, ANN, thread_ids=(tools,)), world.stores)
    late = Message(role="assistant", content=f"{SECRET} late reply")
    body = Blob("json", b"{}")
    with pytest.raises(Erased):
        world.threads.append(chat, late, tenant=TENANT)
    with pytest.raises(Erased):
        await world.threads.aappend(chat, late, tenant=TENANT)
    with pytest.raises(Erased):
        world.threads.set_thread_metadata(chat, {"user_id": ANN}, tenant=TENANT)
    with pytest.raises(Erased):
        world.threads.replace(chat, [late], tenant=TENANT)
    with pytest.raises(Erased):
        world.checkpoints.put(graph, "c9", body, versions={}, tenant=TENANT)
    with pytest.raises(Erased):
        await world.checkpoints.aput(chat, "c9", body, parent_id="c3", tenant=TENANT)
    with pytest.raises(Erased):
        world.checkpoints.put_writes(
            graph, "c3", [PendingWrite("t", 0, "messages", body)], tenant=TENANT
        )
    with pytest.raises(Erased):
        world.journal.record(tools, "call-10", {"email": SECRET}, tenant=TENANT)
    with pytest.raises(Erased):
        await world.journal.arecord(chat, "call-2", {"refund": SECRET}, tenant=TENANT)
    with pytest.raises(Erased):
        world.memories.put((TENANT, ANN, "prefs"), f"{SECRET} late memory")
    with pytest.raises(Erased):
        await world.memories.aput((TENANT, ANN), f"{SECRET} late memory")
    with pytest.raises(Erased):
        world.memories.put_many([MemoryRecord((TENANT, ANN, "kv"), "k1", "", {"v": SECRET})])
    assert leftovers(world, SECRET) == []
    # Others are untouched by the tombstones.
    other = Message(role="assistant", content="bob-keeps reply")
    world.threads.append(f"{BOB}-chat", other, tenant=TENANT)
    world.threads.append("new-thread", other, tenant=TENANT)
    world.checkpoints.put(f"{BOB}-graph", "c9", body, parent_id="c3", tenant=TENANT)
    world.memories.put((TENANT, BOB, "prefs"), "bob again")
    world.memories.put((TENANT, "annabel"), "a user whose id starts like Ann's")
    # Lifting: Ann comes back; her erased data stays erased.
    assert lift(Subject(TENANT, ANN), world.stores) > 0
    world.threads.append(chat, Message(role="user", content="hello again"), tenant=TENANT)
    world.memories.put((TENANT, ANN, "prefs"), "a new start")
    world.journal.record(tools, "call-10", {"ok": True}, tenant=TENANT)
    assert [m.content for m in world.threads.load(chat, tenant=TENANT)] == ["hello again"]
    assert leftovers(world, SECRET) == []
    assert await alift_erasure(Subject(TENANT, ANN), world.stores) == 0


async def test_dry_run_counts_and_changes_nothing_and_erase_is_idempotent(world: World) -> None:
    """A dry run reports what erase then removes, and leaves data and writes alone; a second
    erase finds nothing and counts zeros."""
    fill(world, ANN, SECRET)
    before = snapshot(world, ANN)
    subject = Subject(TENANT, ANN, thread_ids=(f"{ANN}-tools",))
    dry = erase(subject, world.stores, dry_run=True)
    assert dry.dry_run
    assert dry.tombstones == 0
    assert snapshot(world, ANN) == before
    world.threads.append(
        f"{ANN}-chat", Message(role="user", content="still writable"), tenant=TENANT
    )
    real = await aerase(subject, world.stores)
    expected = dry.counts
    assert real.counts.messages == expected.messages + 1
    assert (real.counts.checkpoints, real.counts.memories, real.counts.journal_entries) == (
        expected.checkpoints, expected.memories, expected.journal_entries,
    )  # fmt: skip
    assert sorted(real.thread_ids) == sorted(dry.thread_ids)
    again = erase(subject, world.stores)
    assert again.counts == ErasureCounts()
    assert 0 < again.tombstones <= real.tombstones  # the user's and the named threads' again
    assert (await aerase(subject, world.stores, dry_run=True)).counts == ErasureCounts()


async def test_the_report_counts_each_tombstone_kept_once(world: World) -> None:
    """report.tombstones counts each tombstone the stores keep once, so lift_erasure then
    lifts as many (the thread and checkpoint stores of one database, or of one Redis key
    prefix, share their tombstones, and each thread's was counted once per store kind)."""
    fill(world, ANN, SECRET)
    subject = Subject(TENANT, ANN, thread_ids=(f"{ANN}-tools",))
    report = erase(subject, world.stores)
    assert report.tombstones == lift(subject, world.stores)
    tenant = erase(Subject(TENANT), world.stores)
    assert tenant.tombstones == lift(Subject(TENANT), world.stores)


@pytest.mark.parametrize("world", ["sqlite", "postgresql"], indirect=True)
async def test_store_kinds_sharing_a_database_count_a_tombstone_once(world: World) -> None:
    """With threads, checkpoints and memories in one database, a user's erasure counts one
    tombstone per thread and one for the user, as many as the table holds, and a tenant's
    counts one (it counted 7 and 3: once per store kind)."""
    fill(world, ANN, SECRET)
    report = await aerase(Subject(TENANT, ANN, thread_ids=(f"{ANN}-tools",)), world.stores)
    table = [where for where, _ in world.raw() if where == "memfold_tombstones"]
    assert report.tombstones == len(table) == len(ANN_THREADS) + 1
    assert erase(Subject(TENANT), world.stores).tombstones == 1


async def test_erasing_a_tenant_removes_all_of_it_and_closes_it(world: World) -> None:
    """Subject(tenant) erases every user of the tenant and refuses any write to it until the
    tenant's tombstone is lifted; another tenant is untouched."""
    fill(world, ANN, SECRET)
    fill(world, BOB, SECRET)
    world.threads.append("other", Message(role="user", content="other tenant"), tenant="globex")
    world.memories.put(("globex", "carl"), "other tenant memory")
    report = erase(Subject(TENANT), world.stores)
    assert report.counts.threads == 2
    assert report.counts.memories == 10
    assert report.counts.journal_entries == 6
    assert leftovers(world, SECRET) == []
    assert world.threads.list_threads(tenant=TENANT) == []
    with pytest.raises(Erased):
        world.threads.append("brand-new", Message(role="user", content="x"), tenant=TENANT)
    with pytest.raises(Erased):
        world.memories.put((TENANT, "someone"), "x")
    with pytest.raises(Erased):
        world.checkpoints.put("brand-new", "c1", Blob("json", b"{}"), tenant=TENANT)
    assert [m.content for m in world.threads.load("other", tenant="globex")] == ["other tenant"]
    assert [r.text for r in world.memories.list_records(("globex",))] == ["other tenant memory"]
    assert lift(Subject(TENANT), world.stores) > 0
    world.threads.append("brand-new", Message(role="user", content="x"), tenant=TENANT)


async def test_tombstones_expire(world: World) -> None:
    """With tombstone_ttl, a tombstone refuses writes until it expires, then stops."""
    import asyncio

    world.threads.append("t1", Message(role="user", content="hi"), tenant=TENANT)
    world.memories.put((TENANT, ANN), "hi")
    # Long enough that erasing every store and the refused writes end before it, under load.
    ttl = 2.0
    erase(Subject(TENANT, ANN, thread_ids=("t1",)), world.stores, tombstone_ttl=ttl)
    erased_at = time.monotonic()  # every tombstone was placed by now
    with pytest.raises(Erased):
        world.threads.append("t1", Message(role="user", content="late"), tenant=TENANT)
    with pytest.raises(Erased):
        world.journal.record("t1", "call-1", "late", tenant=TENANT)
    with pytest.raises(Erased):
        world.memories.put((TENANT, ANN), "late")
    await asyncio.sleep(max(0.0, erased_at + ttl + 0.1 - time.monotonic()))
    world.threads.append("t1", Message(role="user", content="after"), tenant=TENANT)
    world.journal.record("t1", "call-1", "after", tenant=TENANT)
    world.memories.put((TENANT, ANN), "after")
    assert lift(Subject(TENANT, ANN, thread_ids=("t1",)), world.stores) == 0  # expired: none live


def test_bad_input_is_refused() -> None:
    """Bad subjects, stores and TTLs raise InvalidInput before anything is erased."""
    threads = make_store("memory", Path("."))
    with pytest.raises(InvalidInput):
        Subject("")
    with pytest.raises(InvalidInput):
        Subject(TENANT, thread_ids="t1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        erase("acme", [threads])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        erase(Subject(TENANT), [object()])
    with pytest.raises(InvalidInput):
        erase(Subject(TENANT), threads)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        erase(Subject(TENANT), [threads], tombstone_ttl=-1)


def test_redis_down_while_erasing_a_tiered_store_erases_it_only_once_redis_is_back() -> None:
    """With its Redis unreachable, erasing a tiered store raises BackendUnavailable and erases
    nothing there, so the hot copy, back with Redis, never outlives the durable data; erasing
    again once Redis is back removes the user from both tiers, as a fresh process sees."""
    import redis

    from memfold import open_store
    from memfold.backends.redis.checkpoint_store import RedisCheckpointStore
    from memfold.backends.redis.store import RedisThreadStore
    from memfold.backends.tiered import TieredThreadStore
    from memfold.backends.tiered_checkpoints import TieredCheckpointStore
    from memfold.errors import BackendUnavailable
    from tests.reliability.servers import PrivateRedis
    from tests.support import postgres_store

    server = PrivateRedis()
    server.start()
    schema, prefix = f"memfold_test_{uuid.uuid4().hex}", "memfold-test:"

    def stores(durable: BaseThreadStore) -> tuple[TieredThreadStore, TieredCheckpointStore]:
        threads = TieredThreadStore(RedisThreadStore(server.url, key_prefix=prefix), durable)
        checkpoints = TieredCheckpointStore(
            RedisCheckpointStore(server.url, key_prefix=prefix),
            postgres_checkpoint_store(schema=schema),
        )
        threads.setup()
        checkpoints.setup()
        return threads, checkpoints

    def secret_in_redis() -> bool:
        raw = redis.Redis.from_url(server.url)
        try:
            return any(SECRET.encode() in (raw.dump(k) or b"") for k in raw.scan_iter("*"))
        finally:
            raw.close()

    threads, checkpoints = stores(postgres_store(schema=schema))
    try:
        threads.append("chat", Message(role="user", content=f"{SECRET} hi"), tenant=TENANT)
        threads.set_thread_metadata("chat", {"user_id": ANN}, tenant=TENANT)
        checkpoints.put(
            "graph", "c1", Blob("json", f'"{SECRET}"'.encode()), metadata={"user_id": ANN},
            tenant=TENANT,
        )  # fmt: skip
        assert threads.load("chat", tenant=TENANT)  # warm: the hot copies are made
        assert checkpoints.get("graph", tenant=TENANT)
        server.kill()
        with pytest.raises(BackendUnavailable, match="Run erase again once it is back"):
            erase(Subject(TENANT, ANN), [threads, checkpoints])
        assert threads.durable.count("chat", tenant=TENANT) == 1  # nothing erased
        assert checkpoints.durable.get("graph", tenant=TENANT) is not None
        server.start()  # with the hot copies: the server replays its append-only file
        assert secret_in_redis()
        report = erase(Subject(TENANT, ANN), [threads, checkpoints])
        assert (report.counts.threads, report.counts.checkpoints) == (1, 1)
        assert not secret_in_redis()
        fresh_threads, fresh_checkpoints = stores(open_store(PG_URL, schema=schema))
        assert fresh_threads.load("chat", tenant=TENANT) == []
        assert fresh_checkpoints.get("graph", tenant=TENANT) is None
        with pytest.raises(Erased):
            fresh_threads.append("chat", Message(role="user", content="late"), tenant=TENANT)
        fresh_threads.close()
        fresh_checkpoints.close()
    finally:
        threads.close()
        checkpoints.close()
        drop_store(threads.durable)
        server.destroy()


async def test_a_tenant_whose_id_looks_like_a_pattern_is_erased_alone(world: World) -> None:
    """Erasing tenant ``a*c`` (a glob pattern to Redis' SCAN) leaves tenant ``abc`` whole."""
    for tenant in ("a*c", "abc"):
        world.threads.append("t", Message(role="user", content=f"{tenant} text"), tenant=tenant)
        world.checkpoints.put("t", "c1", Blob("json", b"{}"), tenant=tenant)
        world.journal.record("t", "call-1", "done", tenant=tenant)
        world.memories.put((tenant, "u"), f"{tenant} memory")
    report = await aerase(Subject("a*c"), world.stores)
    assert (report.counts.threads, report.counts.checkpoints, report.counts.memories) == (1, 1, 1)
    assert [m.content for m in world.threads.load("t", tenant="abc")] == ["abc text"]
    assert world.checkpoints.get("t", tenant="abc") is not None
    assert [e.result for e in world.journal.list_entries("t", tenant="abc")] == ["done"]
    assert [r.text for r in world.memories.list_records(("abc",))] == ["abc memory"]
    assert leftovers(world, "a*c text") == []
