"""The long-term memory behaviour of the Redis store (plain Redis 7, no modules), sync and
async: the suite's tests that need no ranking, and the rest of the suite's behaviours checked
without search, which Redis refuses with UnsupportedOperation."""

# ruff: noqa: F811  # tests take the suite's imported fixtures (api, clock, mstore) by name

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from memfold import BackendUnavailable, UnsupportedOperation
from memfold.backends.redis.memory_store import RedisMemoryStore
from memfold.memories import BaseMemoryStore, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.recall.filters import parse_filter
from memfold.retention import RetentionPolicy
from tests.backends.test_memories import (  # noqa: F401  # the suite's fixtures and tests
    FILTERS,
    NS,
    VALUES,
    Clock,
    api,
    clock,
    test_a_suffix_matches_only_the_labels_after_the_tenant,
    test_delete_and_delete_where,
    test_list_breaks_ties_by_namespace,
    test_list_pages_in_write_order_and_prefix,
    test_size_selects_arrays_of_that_length,
    test_type_selects_the_fields_holding_that_json_type,
    test_whole_float_bounds_compare_by_value,
)
from tests.support import HOW_TO_START, MEMORY_DIMS, REDIS_URL, Api, drop_checkpoint_store


def make_redis(**options: Any) -> BaseMemoryStore:
    """A Redis memory store under a fresh key prefix; fails the test if Redis is down."""
    options.setdefault("key_prefix", f"memfold-test:{uuid.uuid4().hex}:")
    options.setdefault("embedder", HashingEmbedder(MEMORY_DIMS))
    try:
        return open_memory_store(REDIS_URL, **options)
    except BackendUnavailable as exc:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}\n{HOW_TO_START}", pytrace=False)


@pytest.fixture
async def mstore() -> AsyncIterator[BaseMemoryStore]:
    """A fresh Redis memory store."""
    store = make_redis()
    yield store
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # deletes the test's keys


@pytest.fixture
def memory_backend() -> str:
    """The suite's backend name (unused by the tests imported here)."""
    return "redis"


async def test_capabilities_and_refused_search(api: Api) -> None:
    """Redis declares no vector or text ranking; search and vectors raise
    UnsupportedOperation while the record is still written without them."""
    store: BaseMemoryStore = api.store  # type: ignore[assignment]
    assert isinstance(store, RedisMemoryStore)
    caps = store.capabilities
    assert (caps.vector_search, caps.full_text_search, caps.ttl) == (False, False, True)
    record = await api.put(NS, "likes tea", {"k": 1}, id="m1")
    assert record.embedding is None
    with pytest.raises(UnsupportedOperation):
        await api.search(("acme",), "tea")
    with pytest.raises(UnsupportedOperation):
        await api.search(("acme",), vector=[1.0] * MEMORY_DIMS)
    with pytest.raises(UnsupportedOperation):
        await api.put(NS, "x", embedding=[1.0] * MEMORY_DIMS)
    got = await api.get(NS, "m1")
    assert (got.text, got.value, got.embedding) == ("likes tea", {"k": 1}, None)


async def test_upsert_keeps_creation_time(api: Api, clock: Clock) -> None:
    """An upsert by id replaces text, value and importance and keeps the creation time."""
    first = await api.put(NS, "likes tea", {"kind": "pref"}, id="m1", importance=0.7)
    clock.advance(10)
    second = await api.put(NS, "likes coffee", {"kind": "pref", "n": 2.5}, id="m1")
    assert second.created_at == first.created_at
    got = await api.get(NS, "m1")
    assert (got.text, got.value, got.importance) == (
        "likes coffee",
        {"kind": "pref", "n": 2.5},
        0.5,
    )
    assert (got.created_at, got.updated_at) == (first.created_at, second.updated_at)
    assert await api.get(("other", *NS[1:]), "m1") is None
    assert [r.id for r in await api.get_many(NS, ["nope", "m1"])] == ["m1"]


async def test_filter_semantics_match_python(api: Api) -> None:
    """list_records and count select exactly what the Python predicate selects."""
    for i, value in enumerate(VALUES):
        await api.put(NS, f"record {i}", value, id=f"v{i}")
    for spec in FILTERS:
        wanted = {f"v{i}" for i, v in enumerate(VALUES) if parse_filter(spec).matches(v)}
        assert {r.id for r in await api.list_records(("acme",), filter=spec)} == wanted, spec
        assert await api.count(("acme",), filter=spec) == len(wanted), spec


async def test_ttl_touch_and_sweep(api: Api, clock: Clock) -> None:
    """A record past its TTL is never returned, a touch restarts its TTL, and sweep deletes
    expired records of every tenant."""
    await api.put(NS, "short lived", id="s", ttl_seconds=60)
    await api.put(NS, "touched", id="t", ttl_seconds=60)
    await api.put(("other", "u"), "other tenant", id="o", ttl_seconds=30)
    await api.put(NS, "forever", id="f")
    clock.advance(50)
    assert (await api.get(NS, "t", touch=True)).expires_at == clock.now + timedelta(seconds=60)
    clock.advance(20)
    assert await api.get(NS, "s") is None
    assert {r.id for r in await api.list_records(("acme",))} == {"t", "f"}
    assert await api.list_namespaces(("other",)) == []
    assert (await api.sweep()).records == 2
    clock.advance(100)
    assert (await api.sweep()).records == 1
    assert [r.id for r in await api.list_records(("acme",))] == ["f"]


async def test_capacity_evicts_least_important(clock: Clock) -> None:
    """A full namespace drops its least important records, then the least recently used."""
    store = make_redis(capacity=3)
    try:
        for i, importance in enumerate([0.9, 0.1, 0.5, 0.5]):
            clock.advance(1)
            store.put(NS, f"fact {i}", id=f"f{i}", importance=importance)
        assert {r.id for r in store.list_records(("acme",))} == {"f0", "f2", "f3"}
        clock.advance(1)
        store.get(NS, "f2", touch=True)
        await store.aput(NS, "fact 4", id="f4", importance=0.5)
        assert {r.id for r in await store.alist_records(("acme",))} == {"f0", "f2", "f4"}
    finally:
        await store.aclose()
        drop_checkpoint_store(store)  # type: ignore[arg-type]


async def test_no_read_crosses_tenants(api: Api) -> None:
    """Lists, counts, namespaces and deletes under one tenant never reach another's records,
    even a tenant whose name starts with the first's."""
    for tenant in ("t1", "t1x", "t2"):
        for user in ("u1", "u2"):
            await api.put((tenant, user), f"{tenant} {user}", {"tenant": tenant}, id="same")
    for prefix in (("t1",), ("t1", "u1")):
        found = await api.list_records(prefix)
        assert found
        assert all(r.namespace[: len(prefix)] == prefix for r in found)
        assert all(ns[0] == "t1" for ns in await api.list_namespaces(prefix))
    assert await api.count(("t1",)) == 2
    assert await api.delete_where(("t1",)) == 2
    assert await api.count(("t1x",)) == 2
    assert await api.count(("t2",)) == 2


def test_url_opens_redis(tmp_path: Path) -> None:
    """A redis:// URL opens the Redis memory store with its memory options."""
    store = open_memory_store(f"{REDIS_URL}?capacity=5", setup=False)
    try:
        assert isinstance(store, RedisMemoryStore)
        assert store.capacity == 5
    finally:
        store.close()


def test_an_upgrade_to_layout_3_indexes_the_records_written_before(clock: Clock) -> None:
    """Records written before layout 3 (no age or size index) are indexed by setup(), so
    keep_last and max_age sweeps find them; deletes keep the indexes in step."""
    store = make_redis()
    try:
        raw = redis.Redis.from_url(REDIS_URL)
        for i in range(4):
            store.put(("acme", "u1"), f"fact {i}", id=f"r{i}")
            clock.advance(10)
        p = store.key_prefix  # type: ignore[attr-defined]
        raw.delete(f"{p}{{acme}}:mage", f"{p}{{acme}}:msize")
        raw.set(f"{p}m:layout", 2)
        assert store.sweep(RetentionPolicy(keep_last=1, max_age_seconds=25)).records == 0
        store.setup()
        assert raw.zcard(f"{p}{{acme}}:mage") == 4
        assert raw.zscore(f"{p}{{acme}}:msize", "acme\x1fu1\x1f") == 4
        assert store.sweep(RetentionPolicy(max_age_seconds=25), dry_run=True).records == 2
        assert store.sweep(RetentionPolicy(keep_last=1)).records == 3
        assert [r.id for r in store.list_records(("acme",))] == ["r3"]
        assert raw.zcard(f"{p}{{acme}}:mage") == 1
        assert store.delete(("acme", "u1"), "r3") == 1
        assert raw.exists(f"{p}{{acme}}:mage", f"{p}{{acme}}:msize") == 0
        raw.close()
    finally:
        store.close()
        drop_checkpoint_store(store)  # type: ignore[arg-type]
