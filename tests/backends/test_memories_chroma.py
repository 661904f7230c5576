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
from memfold.backends.chroma.store import ChromaMemoryStore
from memfold.memories import BaseMemoryStore, open_memory_store
from tests.backends.test_memories import (  # noqa: F401  # the suite's fixtures and tests
    api,
    clock,
    mstore,
    test_bad_filters_and_vectors_are_refused,
    test_delete_and_delete_where,
    test_expired_records_are_hidden_then_swept,
    test_filter_semantics_match_python_everywhere,
    test_filtered_search_returns_k_when_k_match,
    test_list_pages_in_write_order_and_prefix,
    test_near_duplicates_merge_and_capacity_evicts,
    test_no_read_crosses_tenants,
    test_put_get_upsert,
    test_recency_decay_prefers_newer,
    test_reembed_redoes_vectors_of_other_models,
    test_search_hybrid_text_and_vector,
)
from tests.support import MEMORY_DIMS as DIMS


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
