"""The in-process backend's bounds: thread and message caps evict oldest first; TTL expires."""

from __future__ import annotations

import time
from pathlib import Path

import memfold
from memfold import Message


def msgs(*texts: str) -> list[Message]:
    return [Message(role="user", content=t) for t in texts]


def test_max_threads_evicts_the_least_recently_updated() -> None:
    """Past max_threads, the thread written longest ago is dropped."""
    store = memfold.open_store("memory://?max_threads=2")
    store.append("a", msgs("1"))
    store.append("b", msgs("1"))
    store.append("a", msgs("2"))
    store.append("c", msgs("1"))
    assert sorted(t.thread_id for t in store.list_threads()) == ["a", "c"]
    assert store.count("b") == 0


def test_max_messages_per_thread_drops_the_oldest_messages() -> None:
    """Past max_messages_per_thread, the earliest messages go and paging still works."""
    store = memfold.open_store("memory://", max_messages_per_thread=3)
    stored = store.append("t", msgs("1", "2", "3"))
    stored += store.append("t", msgs("4", "5"))
    assert [m.content for m in store.load("t")] == ["3", "4", "5"]
    assert store.count("t") == 3
    assert [m.content for m in store.load("t", before=stored[4].id)] == ["3", "4"]


def test_ttl_expires_threads_not_written_recently() -> None:
    """A thread not written for ttl_seconds is forgotten; a fresh one stays."""
    store = memfold.open_store("memory://", ttl_seconds=0.2)
    store.append("old", msgs("x"))
    time.sleep(0.3)
    store.append("new", msgs("y"))
    assert store.load("old") == []
    assert [t.thread_id for t in store.list_threads()] == ["new"]


def test_create_memory_is_an_alias_for_open_store(tmp_path: Path) -> None:
    """create_memory("sqlite", db_path=...) opens a persistent SQLite store."""
    path = tmp_path / "chat.db"
    store = memfold.create_memory("sqlite", db_path=path)
    store.append("t", msgs("persisted"))
    store.close()
    again = memfold.open_store(f"sqlite:///{path}")
    assert [m.content for m in again.load("t")] == ["persisted"]
    assert not memfold.create_memory().capabilities.persistent
