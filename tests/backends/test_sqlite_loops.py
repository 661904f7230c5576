"""One SQLite store serves several event loops, one after another and from threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import event

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


def test_a_new_thread_takes_the_connection_an_ended_thread_left(tmp_path: Path) -> None:
    """LangGraph calls a saver on short-lived threads: each new thread reuses the connection
    the last ended thread left; one left inside a transaction is rolled back first."""
    store = memfold.open_store(f"sqlite:///{tmp_path / 'threads.db'}")
    seen: list[tuple[object, bool]] = []
    returned: list[object] = []  # connections handed back to SQLAlchemy's pool
    event.listen(store._driver.engine, "checkin", lambda conn, _record: returned.append(conn))

    def call(leave_open: bool) -> None:
        connection = store._driver.checkout().connection
        seen.append((connection, connection.in_transaction))
        store.append("t", Message(role="user", content=str(len(seen))))
        if leave_open:
            connection.execute("BEGIN")
            connection.execute("DELETE FROM memfold_messages")

    for leave_open in (False, False, True, False):
        worker = threading.Thread(target=call, args=(leave_open,))
        worker.start()
        worker.join()
    assert seen[0][0] is seen[1][0] is seen[2][0]  # handed on while each thread ended cleanly
    assert returned == [seen[2][0]]  # only the one left in a transaction went to the pool
    assert [in_transaction for _, in_transaction in seen] == [False] * 4
    assert store.count("t") == 4  # the third thread's open DELETE was never committed
    store.close()
