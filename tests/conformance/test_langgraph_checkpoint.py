"""LangGraph's own checkpointer conformance suite, run against MemfoldSaver on every backend."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from memfold.checkpoints import aopen_checkpoint_store
from memfold.integrations.langgraph import MemfoldSaver
from tests.support import (
    drop_checkpoint_store,
    postgres_checkpoint_store,
    redis_checkpoint_store,
    tiered_checkpoint_store,
)

EXTENDED = ("delete_for_runs", "copy_thread", "prune")


@checkpointer_test(name="MemfoldSaver[memory]")
async def memory_saver() -> AsyncIterator[MemfoldSaver]:
    """A saver on a fresh memory:// store."""
    async with MemfoldSaver.afrom_url("memory://") as saver:
        yield saver


@checkpointer_test(name="MemfoldSaver[sqlite]")
async def sqlite_saver() -> AsyncIterator[MemfoldSaver]:
    """A saver on a fresh SQLite file."""
    folder = Path(tempfile.mkdtemp(prefix="memfold-conformance-"))
    try:
        store = await aopen_checkpoint_store(f"sqlite:///{folder / 'checkpoints.db'}")
        try:
            yield MemfoldSaver(store)
        finally:
            await store.aclose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@checkpointer_test(name="MemfoldSaver[postgresql]")
async def postgresql_saver() -> AsyncIterator[MemfoldSaver]:
    """A saver on a fresh PostgreSQL schema, dropped afterwards."""
    store = postgres_checkpoint_store()
    try:
        yield MemfoldSaver(store)
    finally:
        await store.aclose()
        drop_checkpoint_store(store)


@checkpointer_test(name="MemfoldSaver[redis]")
async def redis_saver() -> AsyncIterator[MemfoldSaver]:
    """A saver on a fresh Redis key prefix, deleted afterwards."""
    store = redis_checkpoint_store()
    try:
        yield MemfoldSaver(store)
    finally:
        await store.aclose()
        drop_checkpoint_store(store)


@checkpointer_test(name="MemfoldSaver[tiered]")
async def tiered_saver() -> AsyncIterator[MemfoldSaver]:
    """A saver on Redis in front of a fresh PostgreSQL schema, both deleted afterwards."""
    store = tiered_checkpoint_store()
    try:
        yield MemfoldSaver(store)
    finally:
        await store.aclose()
        drop_checkpoint_store(store)


SAVERS = [memory_saver, sqlite_saver, postgresql_saver, redis_saver, tiered_saver]


@pytest.mark.parametrize("registered", SAVERS, ids=lambda r: r.name)
async def test_saver_passes_every_base_and_extended_capability(
    registered: RegisteredCheckpointer,
) -> None:
    """Every base capability passes, and delete_for_runs, copy_thread and prune are detected
    and pass too (checked per capability, not through the level string)."""
    report = await validate(registered, progress=ProgressCallbacks.verbose())
    report.print_report()
    assert report.passed_all_base()
    for name in EXTENDED:
        result = report.results[name]
        assert result.detected, name
        assert result.passed is True, (name, result.failures)
        assert result.tests_failed == 0, name
        assert result.tests_passed > 0, name
    assert report.passed_all()
