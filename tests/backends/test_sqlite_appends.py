"""What one SQLite append costs: the statements it runs and the pages it writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import memfold
from memfold import Message
from memfold.backends.sql import SQLThreadStore

PAGE = 4096
FRAME = PAGE + 24
"""A write-ahead log frame: a page and its header."""


def test_an_append_is_one_statement(tmp_path: Path) -> None:
    """Appending one message to a thread runs one statement, with no BEGIN or COMMIT."""
    store = memfold.open_store(f"sqlite:///{tmp_path / 'one.db'}")
    assert isinstance(store, SQLThreadStore)
    store.append("t", [Message(role="user", content=str(i)) for i in range(3)])
    seen: list[str] = []
    store._driver.checkout().connection.set_trace_callback(seen.append)  # this thread's own
    store.append("t", Message(role="user", content="one more"))
    # SQLite traces the statement again for each trigger program it runs.
    statements = set(seen)
    assert len(statements) == 1, statements
    assert statements.pop().startswith("INSERT INTO memfold_append"), seen
    store.close()


def test_an_append_writes_a_few_pages(tmp_path: Path) -> None:
    """An append to a long thread writes five pages to the write-ahead log: the message row,
    its two index entries (by id and by position), the thread's row and its entry in the index
    by update time. A size index would make it six (schema step 7 dropped it)."""
    path = tmp_path / "pages.db"
    store = memfold.open_store(f"sqlite:///{path}")
    store.append("t", [Message(role="user", content=f"message {i}") for i in range(2000)])
    for i in range(10):  # the pages an append reaches are now in the cache
        store.append("t", Message(role="user", content=f"warm {i}"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    appends = 50
    for i in range(appends):
        store.append("t", Message(role="user", content=f"counted {i}"))
    frames = ((path.parent / (path.name + "-wal")).stat().st_size - 32) / FRAME
    assert frames / appends <= 5.5, frames / appends
    conn.close()
    store.close()
