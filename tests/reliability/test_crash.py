"""Writers killed with SIGKILL at random points lose no acknowledged write and corrupt nothing.

Each kill point is one writer process (forked from a preloaded fork server, so a kill point
costs milliseconds) that appends messages, or puts checkpoints, one at a time and reports each
write on a pipe only after the store acknowledged it. The test kills it at a random moment,
then checks the store: every acknowledged write is there exactly as written, what is there is
an unbroken prefix of what the writer tried (a write is all there or not at all), and the next
writer carries on from it. ``MEMFOLD_CRASH_KILLS`` sets the kills per store kind and backend
(``make soak`` runs many more).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from memfold import Message, open_store
from memfold.checkpoints import Blob, Lease, SequenceBlob, open_checkpoint_store
from tests.support import PG_URL, drop_checkpoint_store, drop_store, postgres_store

KILLS = int(os.environ.get("MEMFOLD_CRASH_KILLS", "100"))
MAX_DELAY = 0.025  # seconds between the writer's first write and its kill, at most
CHAIN = 25  # kills per checkpoint thread, so that the checkpointed list stays short
LEASE = Lease("crash-writer", 60)  # every writer process is the same logical writer

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["__main__", __name__])


def text_of(i: int) -> str:
    """The content of message ``i``: long enough to span pages now and then."""
    return f"message {i} " + "x" * (i * 37 % 3000)


def item(i: int) -> bytes:
    """The serialized ``i``-th item of the checkpointed list."""
    return json.dumps({"n": i, "text": text_of(i)[:300]}).encode()


def write_messages(
    url: str, options: dict[str, Any], thread: str, start: int, pipe: Connection
) -> None:
    """Append messages ``start, start + 1, ...`` one per call, reporting each acknowledged id."""
    store = open_store(url, setup=False, **options)
    for i in range(start, start + 100_000):
        store.append(thread, Message(role="user", content=text_of(i), id=f"m{i:06d}"))
        pipe.send(i)


def write_checkpoints(
    url: str, options: dict[str, Any], thread: str, start: int, pipe: Connection
) -> None:
    """Put checkpoints ``start, ...`` in one chain, each one's list one item longer."""
    store = open_checkpoint_store(url, setup=False, **options)
    for i in range(start, start + 100_000):
        store.put(
            thread, f"c{i:06d}", Blob("json", b"{}"),
            parent_id=f"c{i - 1:06d}" if i else None, versions={"messages": i + 1},
            values={"messages": SequenceBlob("json", tuple(item(j) for j in range(i + 1)))},
            lease=LEASE,
        )  # fmt: skip
        pipe.send(i)


def kill_at_random(
    target: Any, url: str, options: dict[str, Any], thread: str, start: int
) -> list[int]:
    """Run one writer and SIGKILL it a random moment after its first acknowledged write (or
    before it, now and then); returns the writes it reported, once the server (if any) has
    finished with the dead writer's session."""
    receiver, sender = _context.Pipe(duplex=False)
    args = (url, options, thread, start, sender)
    process = _context.Process(target=target, args=args, daemon=True)
    process.start()
    sender.close()
    acked: list[int] = []
    # Mostly mid-write; now and then while it opens the store.
    if random.random() < 0.9 and receiver.poll(30):
        acked.append(receiver.recv())
    time.sleep(random.uniform(0, MAX_DELAY))
    os.kill(process.pid, signal.SIGKILL)  # type: ignore[arg-type]
    process.join(30)
    assert process.exitcode == -signal.SIGKILL, f"the writer died on its own: {process.exitcode}"
    while receiver.poll():
        try:
            acked.append(receiver.recv())
        except EOFError:
            break
    receiver.close()
    wait_for_sessions_to_end(url)
    return acked


def wait_for_sessions_to_end(url: str) -> None:
    """On PostgreSQL, wait until the server has closed the killed writer's sessions: a COMMIT
    it sent just before dying may still be applied, and the next check must see it."""
    if not url.startswith("postgresql"):
        return
    import psycopg

    name = url.partition("application_name=")[2]
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for _ in range(500):
            row = conn.execute(query, (name,)).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.01)
    raise AssertionError("the killed writer's PostgreSQL sessions did not end")


def pg_url() -> str:
    """The writers' PostgreSQL URL, with an application name of this test's own to find their
    sessions by."""
    return f"{PG_URL}?application_name=memfold-crash-{uuid.uuid4().hex[:12]}"


def reader_url(url: str) -> str:
    """The URL the checking side opens: the writers' without their application name."""
    return url.partition("?")[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend whose writers are killed."""
    return str(request.param)


@pytest.fixture
def thread_target(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A URL and options every writer opens as one thread store."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        store, options = open_store(url), {}
    else:
        store = postgres_store()
        url, options = pg_url(), {"schema": store.tables.schema}  # type: ignore[attr-defined]
    yield url, options
    drop_store(store)
    store.close()


@pytest.fixture
def checkpoint_target(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A URL and options every writer opens as one checkpoint store."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        store, options = open_checkpoint_store(url), {}
    else:
        from tests.support import postgres_checkpoint_store

        store = postgres_checkpoint_store()
        url, options = pg_url(), {"schema": store.tables.schema}  # type: ignore[attr-defined]
    yield url, options
    store.close()
    drop_checkpoint_store(store)


def check_sqlite_file(url: str) -> None:
    """The SQLite file passes its own integrity check."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_killed_appenders_lose_no_acknowledged_message(
    thread_target: tuple[str, dict[str, Any]],
) -> None:
    """After each kill the thread holds every acknowledged message, intact and in order, and
    nothing but an unbroken run of whole messages; the store then reopens cleanly."""
    url, options = thread_target
    acknowledged = stored = 0
    with open_store(reader_url(url), **options) as reader:
        for _ in range(KILLS):
            acked = kill_at_random(write_messages, url, options, "crash", stored)
            assert acked == list(range(stored, stored + len(acked)))
            acknowledged += len(acked)
            messages = reader.load("crash")
            assert len(messages) >= stored + len(acked), "an acknowledged message is missing"
            assert len(messages) <= stored + len(acked) + 1, "more than the one unreported write"
            for m in messages[stored:]:
                i = int(m.id.removeprefix("m"))  # type: ignore[union-attr]
                assert m.content == text_of(i)
            assert [m.id for m in messages] == [f"m{i:06d}" for i in range(len(messages))]
            stored = len(messages)
    assert acknowledged >= KILLS // 2, "most writers should get a write in before the kill"
    check_sqlite_file(url)
    with open_store(reader_url(url), **options) as reopened:
        assert reopened.count("crash") == stored


def test_killed_checkpointers_lose_no_acknowledged_checkpoint(
    checkpoint_target: tuple[str, dict[str, Any]],
) -> None:
    """After each kill every acknowledged checkpoint reads back with its whole list, the chain
    is unbroken, and no delta is left without the checkpoint that wrote it."""
    url, options = checkpoint_target
    total = 0
    with open_checkpoint_store(reader_url(url), **options) as reader:
        for chain in range(0, KILLS, CHAIN):
            thread, stored = f"crash-{chain}", 0
            for _ in range(min(CHAIN, KILLS - chain)):
                acked = kill_at_random(write_checkpoints, url, options, thread, stored)
                assert acked == list(range(stored, stored + len(acked)))
                ids = [c.checkpoint_id for c in reader.list_checkpoints(thread)]
                count = len(ids)
                assert stored + len(acked) <= count <= stored + len(acked) + 1
                assert ids == [f"c{i:06d}" for i in reversed(range(count))]
                for i in {count - 1, *acked, random.randrange(count)} if count else ():
                    got = reader.get(thread, checkpoint_id=f"c{i:06d}")
                    assert got is not None
                    value = got.values["messages"]
                    assert isinstance(value, SequenceBlob)
                    assert value.items == tuple(item(j) for j in range(i + 1)), i
                stored = count
            total += stored
    check_sqlite_file(url)
    with open_checkpoint_store(reader_url(url), **options) as reopened:
        assert reopened.stats().checkpoints == total
