"""Several processes and threads appending to one SQLite file lose and duplicate nothing."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine

import memfold
from memfold import BackendUnavailable, Message
from memfold.backends.sql import SQLThreadStore


def writer(url: str, name: str, count: int) -> None:
    store = memfold.open_store(url)
    for i in range(count):
        store.append("shared", Message(role="user", content=f"{name} {i}"))
        store.append(f"own-{name}", Message(role="user", content=str(i)))
    store.close()


def test_concurrent_writers_keep_every_message_in_per_writer_order(tmp_path: Path) -> None:
    """Four processes append at once: every message lands once, each writer's in its order."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    memfold.open_store(url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=writer, args=(url, f"w{n}", 50)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = memfold.open_store(url)
    shared = [m.content for m in store.load("shared")]
    assert len(shared) == len(set(shared)) == 200
    for n in range(4):
        mine = [int(str(c).split()[1]) for c in shared if str(c).startswith(f"w{n} ")]
        assert mine == list(range(50))
        assert store.count(f"own-w{n}") == 50
    assert store.get_thread("shared").message_count == 200


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    """A child forked from a process whose store has a connection open writes through a
    connection of its own, never the parent's (which sharing a SQLite handle would corrupt)."""
    store = memfold.open_store(f"sqlite:///{tmp_path / 'fork.db'}")
    store.append("t", Message(role="user", content="parent"))
    parents = store._driver.checkout().connection  # type: ignore[attr-defined]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        ok = store._driver.checkout().connection is not parents  # type: ignore[attr-defined]
        store.append("t", Message(role="user", content="child"))
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert status == 0
    assert store._driver.checkout().connection is parents  # type: ignore[attr-defined]
    store.append("t", Message(role="user", content="parent again"))
    assert [m.content for m in store.load("t")] == ["parent", "child", "parent again"]
    store.close()


def test_more_threads_than_a_pool_holds_call_one_store_at_once(tmp_path: Path) -> None:
    """40 threads, all alive at once, each holding its connection (as a LangGraph fan-out's
    workers do): every append lands. With SQLAlchemy's default pool (15 connections) the 16th
    thread waited 30 s and failed, and a saver's background put was lost."""
    store = memfold.open_store(f"sqlite:///{tmp_path / 'threads.db'}")
    together = threading.Barrier(40, timeout=20)
    failed: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            store.append(f"t{n}", Message(role="user", content="before"))
            together.wait()
            store.append(f"t{n}", Message(role="user", content="after"))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failed == []
    assert [store.count(f"t{n}") for n in range(40)] == [2] * 40
    store.close()


def test_an_engine_pool_smaller_than_the_threads_is_a_typed_error(tmp_path: Path) -> None:
    """An engine of the caller's with one connection: a second thread calling the store gets
    `BackendUnavailable` saying how to size the pool, not SQLAlchemy's own timeout."""
    engine = create_engine(
        f"sqlite:///{tmp_path / 'small.db'}", pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    store = SQLThreadStore(engine)
    store.setup()
    store.append("t", Message(role="user", content="main thread"))  # keeps the one connection
    failed: list[BaseException] = []
    other = threading.Thread(
        target=lambda: failed.extend(_raised(store.append, "t", Message(role="user", content="x")))
    )
    other.start()
    other.join(10)
    assert len(failed) == 1
    with pytest.raises(BackendUnavailable, match="pool_size=0 has no limit"):
        raise failed[0]
    assert store.count("t") == 1
    store.close()
    engine.dispose()


def _raised(call: object, *args: object) -> list[BaseException]:
    try:
        call(*args)  # type: ignore[operator]
    except BaseException as exc:
        return [exc]
    return []
