"""One SQLite store serves several event loops, one after another and from threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import memfold
from memfold import Message


def test_a_store_survives_its_event_loops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each asyncio.run gets a working store, and close() afterwards logs no error."""
    store = memfold.open_store(f"sqlite:///{tmp_path / 'loops.db'}")
    for i in range(3):
        asyncio.run(store.aappend("t", Message(role="user", content=str(i))))
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(asyncio.run(store.acount("t"))))
    worker.start()
    worker.join()
    store.close()
    assert results == [3]
    assert [
        m.content for m in memfold.open_store(f"sqlite:///{tmp_path / 'loops.db'}").load("t")
    ] == [
        "0",
        "1",
        "2",
    ]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
