"""Two processes running one thread at once: one extends it, the other gets Conflict."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memfold import Conflict
from memfold.checkpoints import BaseCheckpointStore, Blob, Lease, open_checkpoint_store
from tests.support import PG_URL, drop_checkpoint_store, postgres_checkpoint_store

STEPS = 20
BODY = Blob("json", b"{}")


def writer(url: str, options: dict[str, Any], name: str, start: float, results: Any) -> None:
    """Extend the thread from ``0000`` in a chain of its own, holding a lease as ``name``."""
    store = open_checkpoint_store(url, setup=False, **options)
    lease = Lease(name, 60)
    parent = "0000"
    done = 0
    time.sleep(max(0.0, start - time.time()))
    try:
        for step in range(1, STEPS + 1):
            checkpoint_id = f"{step:04d}-{name}"
            store.put(
                "shared", checkpoint_id, BODY, parent_id=parent, versions={"n": step},
                values={"n": Blob("json", str(step).encode())}, lease=lease,
            )  # fmt: skip
            parent = checkpoint_id
            done += 1
        results.put((name, done, None))
    except Conflict as exc:
        results.put((name, done, str(exc)))
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A URL and options that several processes open as one checkpoint store."""
    store: BaseCheckpointStore
    if request.param == "sqlite":
        url, options = f"sqlite:///{tmp_path / 'shared.db'}", {}
        store = open_checkpoint_store(url)
    else:
        store = postgres_checkpoint_store()
        url, options = PG_URL, {"schema": store.tables.schema}  # type: ignore[attr-defined]
    store.put("shared", "0000", BODY, versions={"n": 0}, values={"n": Blob("json", b"0")})
    try:
        yield url, options
    finally:
        store.close()
        drop_checkpoint_store(store)


def test_the_second_process_on_a_thread_gets_conflict(shared: tuple[str, dict[str, Any]]) -> None:
    """Two processes start extending one thread at the same moment: exactly one writes all its
    steps, the other is refused with Conflict at its first write, and the thread holds one
    unforked chain."""
    url, options = shared
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start = time.time() + 2.0
    procs = [ctx.Process(target=writer, args=(url, options, name, start, results)) for name in "AB"]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    refused = [o for o in outcomes if o[2] is not None]
    finished = [o for o in outcomes if o[2] is None]
    assert len(finished) == 1, outcomes
    assert finished[0][1] == STEPS, outcomes
    assert len(refused) == 1, outcomes
    assert refused[0][1] == 0, outcomes
    assert "another live writer" in str(refused[0][2])
    winner = finished[0][0]
    store = open_checkpoint_store(url, setup=False, **options)
    try:
        ids = [c.checkpoint_id for c in store.list_checkpoints("shared")]
        assert ids == [f"{s:04d}-{winner}" for s in range(STEPS, 0, -1)] + ["0000"]
    finally:
        store.close()
