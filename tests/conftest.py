"""Shared fixtures: every thread-store behaviour runs on each backend, through sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from memfold.stores import BaseThreadStore
from tests.support import BACKENDS, Api, drop_store, make_store

# No example database: hypothesis would otherwise write .hypothesis/ into the repository. Slow
# generation is no failure: on a busy 2-core machine (CI, pytest -n) it is the machine's speed.
settings.register_profile("memfold", database=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("memfold")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[BaseThreadStore]:
    """A fresh, set-up store of each backend."""
    s = make_store(backend, tmp_path)
    yield s
    drop_store(s)
    s.close()


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, store: BaseThreadStore) -> AsyncIterator[Api]:
    """The store under test, driven through its sync or its async API."""
    yield Api(store, request.param == "async")
    if request.param == "async":
        await store.aclose()
