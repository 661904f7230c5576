"""Fixtures the adapter fuzz tests share: memory and SQLite stores, sync and async.

A fuzz module that drives other backends defines its own ``backend`` (a module's fixture
overrides these)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memfold.memories import BaseMemoryStore
from memfold.stores import BaseThreadStore
from tests.reliability.test_fuzz_memories import Canary
from tests.support import drop_checkpoint_store, drop_store, make_memory_store
from tests.support import make_store as make_thread_store


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backends the adapters are fuzzed on (the core fuzz tests cover the others)."""
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    """Whether the adapter is driven through its async twins."""
    return request.param == "async"


@pytest.fixture
async def mstore(backend: str, tmp_path: Path) -> AsyncIterator[BaseMemoryStore]:
    """A fresh memory store of each backend, embedding with a `HashingEmbedder`."""
    store = make_memory_store(backend, tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]


@pytest.fixture
def canary(mstore: BaseMemoryStore) -> Canary:
    """Canary records, in the memory store under test."""
    return Canary(mstore)


@pytest.fixture
async def tstore(backend: str, tmp_path: Path) -> AsyncIterator[BaseThreadStore]:
    """A fresh thread store of each backend."""
    store = make_thread_store(backend, tmp_path)
    yield store
    await store.aclose()
    drop_store(store)
