"""Long-term memory reads and deletes stay inside the namespace (prefix) they name, and so inside
its tenant, on every memory backend: even for a tenant whose name starts with another's, the
same record id in every tenant, and ids crafted to reach a deeper namespace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memfold import InvalidInput
from memfold.memories import BaseMemoryStore, MemoryRecord, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from tests.support import (
    MEMORY_BACKENDS,
    MEMORY_DIMS,
    REDIS_URL,
    Api,
    drop_checkpoint_store,
    make_memory_store,
)

TENANTS = ("t1", "t1x", "t2")  # t1x starts with t1's name
USERS = ("u1", "u2")


@pytest.fixture(params=[*MEMORY_BACKENDS, "redis", "chroma", "chroma+http"])
async def mstore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseMemoryStore]:
    """A fresh memory store of each backend."""
    if request.param == "redis":
        store = open_memory_store(
            REDIS_URL,
            key_prefix=f"memfold-test:{uuid.uuid4().hex}:",
            embedder=HashingEmbedder(MEMORY_DIMS),
        )
    else:
        store = make_memory_store(str(request.param), tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops a test schema or keys


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, mstore: BaseMemoryStore) -> Api:
    """The memory store through its sync or its async API."""
    return Api(mstore, request.param == "async")  # type: ignore[arg-type]  # any store works


async def _everything(api: Api, tenant: str) -> list[tuple[Any, ...]]:
    records = await api.list_records((tenant,), limit=100)
    return sorted((r.namespace, r.id, r.text, r.value) for r in records)


async def test_reads_and_deletes_stay_in_their_tenant(api: Api) -> None:
    """Gets, lists, counts, namespace listings, searches, re-embeds, writes and deletes under
    tenant t1 never return or change a record of t1x or t2."""
    caps = api.store.capabilities
    for tenant in TENANTS:
        for user in USERS:
            text = f"{tenant} {user} drinks green tea"
            await api.put((tenant, user), text, {"tenant": tenant}, id="same")
            await api.put((tenant, user, "deep"), text, {"tenant": tenant}, id="inner")
    others = {t: await _everything(api, t) for t in TENANTS[1:]}
    assert [len(found) for found in others.values()] == [4, 4]

    found = await api.get(("t1", "u1"), "same")
    assert (found.namespace, found.value) == (("t1", "u1"), {"tenant": "t1"})
    assert await api.get(("t1",), "same") is None  # a namespace is exact, not a prefix
    assert [r.id for r in await api.get_many(("t1", "u1"), ["same", "inner"])] == ["same"]
    listed = await api.list_records(("t1",), limit=100)
    assert len(listed) == 4
    assert {r.value["tenant"] for r in listed} == {"t1"}
    assert await api.count(("t1",)) == 4
    assert {ns[0] for ns in await api.list_namespaces(("t1",))} == {"t1"}
    if caps.full_text_search:
        hits = await api.search(("t1",), "t1x t2 drinks green tea", k=50)
        assert len(hits) == 4
        assert {h.record.value["tenant"] for h in hits} == {"t1"}
    if caps.vector_search:
        hits = await api.search(("t1",), vector=[1.0] * MEMORY_DIMS, k=50)
        assert {h.record.value["tenant"] for h in hits} == {"t1"}
        assert await api.reembed(("t1",), force=True) == 4
        stored = await api.put_many(
            [MemoryRecord(("t1", "new"), text="t2 u1 drinks green tea")], dedupe_threshold=0.5
        )
        assert stored[0].namespace == ("t1", "new")  # never merged into t2's twin
        await api.delete(("t1", "new"), stored[0].id)
    await api.put(("t1", "u1"), "rewritten", {"tenant": "t1"}, id="same")
    assert await api.delete(("t1", "u1"), ["same", "inner"]) == 1
    assert await api.delete_where(("t1",)) == 3
    assert await api.count(("t1",)) == 0
    assert {t: await _everything(api, t) for t in TENANTS[1:]} == others


async def test_ids_cannot_reach_another_namespace(api: Api) -> None:
    """A record id holding the namespace separator is refused, so no id can name a record of a
    deeper or another namespace."""
    await api.put(("t1", "u1", "deep"), "kept", id="inner")
    crafted = "deep\x1finner"
    for call in (
        lambda: api.get(("t1", "u1"), crafted),
        lambda: api.get_many(("t1", "u1"), [crafted]),
        lambda: api.delete(("t1", "u1"), crafted),
        lambda: api.put(("t1", "u1"), "overwrite", id=crafted),
    ):
        with pytest.raises(InvalidInput, match="separator"):
            await call()
    assert (await api.get(("t1", "u1", "deep"), "inner")).text == "kept"
