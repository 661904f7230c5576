"""The long-term memory behaviour suite (`tests.backends.test_memories`) on Chroma: embedded
(``chroma:///dir``) and a ``chroma run`` server over HTTP (``chroma+http://``), sync and async.

The server is started on a free port once per test process (`tests.support.chroma_server`); if
it does not come up the tests fail with its log, never skip.
"""

# ruff: noqa: F811  # tests take the suite's imported fixtures (api, clock, mstore) by name

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memfold import InvalidInput, UnsupportedOperation
from memfold.backends.chroma.mapping import item_id
from memfold.backends.chroma.store import ChromaMemoryStore
from memfold.memories import BaseMemoryStore, namespace_key, open_memory_store
from tests.backends.test_memories import (  # noqa: F401  # the suite's fixtures and tests
    api,
    clock,
    mstore,
    test_a_batch_merges_into_records_as_it_rewrites_them,
    test_a_suffix_matches_only_the_labels_after_the_tenant,
    test_bad_filters_and_vectors_are_refused,
    test_concurrent_puts_keep_the_capacity_and_merge_duplicates,
    test_delete_and_delete_where,
    test_expired_records_are_hidden_then_swept,
    test_filter_semantics_match_python_everywhere,
    test_filtered_search_returns_k_when_k_match,
    test_list_breaks_ties_by_namespace,
    test_list_pages_in_write_order_and_prefix,
    test_near_duplicates_merge_and_capacity_evicts,
    test_no_read_crosses_tenants,
    test_put_get_upsert,
    test_recency_decay_prefers_newer,
    test_reembed_redoes_vectors_of_other_models,
    test_search_breaks_ties_by_namespace,
    test_search_hybrid_text_and_vector,
    test_size_selects_arrays_of_that_length,
    test_type_selects_the_fields_holding_that_json_type,
    test_whole_float_bounds_compare_by_value,
)
from tests.support import MEMORY_DIMS as DIMS
from tests.support import Api


@pytest.fixture(params=["chroma", "chroma+http"])
def memory_backend(request: pytest.FixtureRequest) -> str:
    """The Chroma deployment under test."""
    return str(request.param)


def test_urls_and_required_dimensions(tmp_path: Path) -> None:
    """Chroma URLs open the right deployment; a store without a vector length is refused."""
    store = open_memory_store(f"chroma:///{tmp_path}/x", dimensions=3, setup=False)
    assert isinstance(store, ChromaMemoryStore)
    assert (store.path, store.capabilities.shared) == (f"/{tmp_path}/x", False)
    remote = open_memory_store("chroma+http://127.0.0.1:9", dimensions=3, setup=False)
    assert (remote.name, remote.capabilities.transactions) == ("chroma+http", False)
    with pytest.raises(InvalidInput, match="dimensions"):
        open_memory_store(f"chroma://{tmp_path}/y")
    with pytest.raises(InvalidInput, match="chroma"):
        open_memory_store("chroma+http://", dimensions=3, setup=False)
    with pytest.raises(memfold_unavailable()):
        remote.setup()


def memfold_unavailable() -> type[Exception]:
    """The error a store gives when its server is down."""
    from memfold.errors import BackendUnavailable

    return BackendUnavailable


async def test_search_pool_grows_past_a_selective_filter(
    mstore: BaseMemoryStore,
) -> None:
    """A filter that Chroma cannot push down ($exists) still fills k, in both
    rankings, by asking Chroma for more candidates."""
    vector = [1.0] + [0.0] * (DIMS - 1)
    for i in range(150):
        value: dict[str, Any] = {"i": i} if i % 30 else {"i": i, "rare": True}
        mstore.put(("t", "u"), f"common words {i}", value, embedding=vector)
    spec: dict[str, Any] = {"rare": {"$exists": True}, "i": {"$gte": 0}}
    hits = await mstore.asearch(("t",), "common", vector=vector, k=5, filter=spec)
    assert sorted(int(str(h.record.value["i"])) for h in hits) == [0, 30, 60, 90, 120]
    with pytest.raises(UnsupportedOperation):
        mstore.capabilities.require("transactions", mstore.name)


async def _filtered(api: Api, spec: dict[str, Any]) -> tuple[list[str], int, list[str]]:
    """What ``spec`` selects under ``("t",)``: the ids listed, the count, the ids searched."""
    listed = sorted(r.id for r in await api.list_records(("t",), filter=spec))
    hits = await api.search(("t",), vector=[1.0] + [0.0] * (DIMS - 1), filter=spec, k=9)
    return listed, await api.count(("t",), filter=spec), sorted(h.record.id for h in hits)


async def test_order_tests_across_int_and_float_lose_no_match(api: Api) -> None:
    """Chroma compares an int field with a float bound truncated, and a float field with an
    int bound rounded: the pushed-down test must still select every match."""
    for name, x in {"zero": 0, "minus": -1, "near": float(2**53)}.items():
        await api.put(("t",), name, {"x": x}, id=name)
    for bound, expected in [
        ({"$lt": 0.5}, ["minus", "zero"]),
        ({"$gt": -1.5}, ["minus", "near", "zero"]),
        ({"$lt": 2**53 + 1}, ["minus", "near", "zero"]),
    ]:
        assert await _filtered(api, {"x": bound}) == (expected, len(expected), expected)


async def test_ints_beyond_64_bits_are_filtered(api: Api) -> None:
    """A value int Chroma cannot store as an int is still found by order and equality tests
    (it was once left out of the metadata, so no pushed-down test matched it)."""
    for name, x in {"small": 1, "huge": 2**64, "vast": 10**400, "below": -(2**64)}.items():
        await api.put(("t",), name, {"x": x}, id=name)
    for bound, expected in [
        ({"$gt": 2**63 - 1}, ["huge", "vast"]),
        ({"$gte": 1.8446744073709552e19}, ["huge", "vast"]),
        ({"$eq": 1.8446744073709552e19}, ["huge"]),
        ({"$lt": 0}, ["below"]),
    ]:
        assert await _filtered(api, {"x": bound}) == (expected, len(expected), expected)


async def test_an_upsert_leaves_no_key_of_the_old_version(api: Api) -> None:
    """Chroma merges an upsert's metadata into the item's: an overwritten record keeps no key
    of its old version (search once still found it by its old words)."""
    await api.put(("t",), "roof tiles", {"kind": "a", "m": {"n": 1}}, id="a")
    await api.put(("t",), "roof", id="b")
    for suffix in ("", "-new"):
        await api.put(("t",), "", {"other": True}, id="a" + suffix)
        await api.put(("t",), "the of", id="b" + suffix)
    assert await api.search(("t",), "roof", vector_weight=0.0) == []
    for spec in ({"kind": "a"}, {"m.n": 1}):
        assert await api.list_records(("t",), filter=spec) == []
    store = api.store
    assert isinstance(store, ChromaMemoryStore)
    ids = [item_id(namespace_key(("t",)), i) for i in ("a", "a-new", "b", "b-new")]
    found = store._sync_collection().get(ids=ids, include=["metadatas"])
    keys = {i: sorted(meta) for i, meta in zip(found["ids"], found["metadatas"], strict=True)}
    assert (keys[ids[0]], keys[ids[2]]) == (keys[ids[1]], keys[ids[3]])


async def test_a_query_of_stop_words_finds_nothing(api: Api) -> None:
    """A text search whose query has no terms returns no hits, as on every backend, with or
    without a vector; it once raised InvalidInput."""
    await api.put(("t",), "the roof", id="r1")
    assert await api.search(("t",), "the", vector_weight=0.0) == []
    hits = await api.search(("t",), "the of", vector=[1.0] + [0.0] * (DIMS - 1))
    assert [h.record.id for h in hits] == ["r1"]
