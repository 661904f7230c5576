"""Retention sweeps of long-term memories on every memory backend (Chroma and Redis included),
through the sync and async APIs: expired records, keep_last per namespace and max_age_seconds,
one tenant or all, each counted the same by a dry run that changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import memfold.memories
from memfold.memories import BaseMemoryStore
from memfold.retention import RetentionPolicy
from tests.support import MEMORY_BACKENDS, Api, drop_checkpoint_store, make_memory_store


@pytest.fixture(params=[*MEMORY_BACKENDS, "redis", "chroma"])
async def mstore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseMemoryStore]:
    """A fresh, set-up memory store of each backend."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema or prefix


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, mstore: BaseMemoryStore) -> Api:
    """The memory store driven through its sync or its async API."""
    return Api(mstore, request.param == "async")  # type: ignore[arg-type]


class Clock:
    """A settable clock standing in for ``utcnow`` where operations are built."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Records and sweeps are stamped with a clock the test moves by hand."""
    fake = Clock()
    monkeypatch.setattr(memfold.memories, "utcnow", fake)
    return fake


async def ids(api: Api, *namespace: str) -> list[str]:
    return sorted(str(r.id) for r in await api.list_records(namespace, limit=100))


async def test_keep_last_keeps_the_newest_records_of_each_namespace(api: Api, clock: Clock) -> None:
    """keep_last=N leaves each namespace its N newest records; a dry run counts the same and
    changes nothing."""
    for i in range(5):
        await api.put(("acme", "u1"), f"fact {i}", id=f"a{i}")
        clock.advance(1)
    await api.put(("acme", "u2"), "one", id="b0")
    await api.put(("acme", "u2"), "two", id="b1")
    policy = RetentionPolicy(keep_last=2)
    planned = await api.sweep(policy, dry_run=True)
    assert planned.records == 3
    assert await api.count(("acme",)) == 7
    assert await api.sweep(policy) == planned
    assert await ids(api, "acme", "u1") == ["a3", "a4"]
    assert await ids(api, "acme", "u2") == ["b0", "b1"]
    assert (await api.sweep(policy)).records == 0


async def test_max_age_and_expiry_remove_old_records(api: Api, clock: Clock) -> None:
    """max_age removes records created longer ago than that, and every sweep removes expired
    records; an upsert keeps its record's creation time."""
    await api.put(("acme", "u1"), "old", id="old")
    await api.put(("acme", "u1"), "brief", id="brief", ttl_seconds=30)
    clock.advance(100)
    await api.put(("acme", "u1"), "new", id="new")
    await api.put(("acme", "u1"), "old, edited", id="old")
    clock.advance(50)
    policy = RetentionPolicy(max_age_seconds=120)
    planned = await api.sweep(policy, dry_run=True)
    assert planned.records == 2
    assert await api.sweep(policy) == planned
    assert await ids(api, "acme", "u1") == ["new"]


async def test_a_sweep_naming_a_tenant_leaves_the_others(api: Api, clock: Clock) -> None:
    """sweep(tenant=...) covers only the namespaces of that tenant; without one, all."""
    for tenant in ("acme", "globex"):
        for i in range(3):
            await api.put((tenant, "u1"), f"fact {i}", id=f"r{i}")
            clock.advance(1)
    policy = RetentionPolicy(keep_last=1)
    assert (await api.sweep(policy, tenant="acme", dry_run=True)).records == 2
    assert (await api.sweep(policy, tenant="acme")).records == 2
    assert await ids(api, "globex", "u1") == ["r0", "r1", "r2"]
    assert (await api.sweep(policy)).records == 2
    assert await ids(api, "globex", "u1") == ["r2"]
    assert await ids(api, "acme", "u1") == ["r2"]
