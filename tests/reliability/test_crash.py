"""Writers killed with SIGKILL at random points lose no acknowledged write and corrupt nothing.

Each kill point is one writer process that appends messages, puts checkpoints, or puts,
upserts and deletes long-term memories, one write at a time, and reports each write on a pipe
only after the store acknowledged it. The test kills it at a random moment, then checks the
store: every acknowledged write is there exactly as written, the store holds what the writer's
first *n* writes make, for *n* the number acknowledged or one more (a write is all there or
not at all), and the next writer carries on from it. At the end the store reopens and, on
SQLite, passes ``PRAGMA integrity_check``.

Writers are forked from a *zygote*: a single-threaded process that opened the store once
(imports and compiled statements, but no connection), so a kill point costs a fork, a
connection and the writes rather than a new interpreter. ``MEMFOLD_CRASH_KILLS`` sets the kills
per store kind and backend: 70 by default, so 210 per backend (``make soak`` runs 2,000).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import psycopg
import pytest

from memfold import Message, open_store
from memfold.checkpoints import Blob, Lease, SequenceBlob, open_checkpoint_store
from memfold.memories import open_memory_store
from memfold.recall.embedders import HashingEmbedder
from tests.reliability.processes import context
from tests.support import MEMORY_DIMS, PG_URL, drop_store, postgres_store

KILLS = int(os.environ.get("MEMFOLD_CRASH_KILLS", "70"))
MAX_DELAY = 0.025  # seconds between the writer's first write and its kill, at most
CHAIN = 25  # kills per checkpoint thread, so that the checkpointed list stays short
LEASE = Lease("crash-writer", 60)  # every writer process is the same logical writer
NAMESPACE = ("crash", "user")


Ack = Callable[[int], None]


def text_of(i: int) -> str:
    """The content of write ``i``: long enough to span pages now and then."""
    return f"message {i} " + "x" * (i * 37 % 3000)


def item(i: int) -> bytes:
    """The serialized ``i``-th item of the checkpointed list."""
    return json.dumps({"n": i, "text": text_of(i)[:300]}).encode()


# Long-term memories: write i of the writers' one sequence, in blocks of four: put a new
# record, put another, upsert the first, delete the second. Every write changes the state.


def memory_write(i: int) -> tuple[str, str, int] | tuple[str, None, None]:
    """Write ``i`` as (record id, text, version), or (record id, None, None) for a delete."""
    block, step = divmod(i, 4)
    if step == 0:
        return f"a{block:06d}", f"note {block} v0 {text_of(i)}", 0
    if step == 1:
        return f"b{block:06d}", f"aside {block} {text_of(i)}", 0
    if step == 2:
        return f"a{block:06d}", f"note {block} v1 {text_of(i)}", 1
    return f"b{block:06d}", None, None


def memories_after(count: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """What the first ``count`` memory writes leave: id -> (text, value)."""
    state: dict[str, tuple[str, dict[str, Any]]] = {}
    for i in range(count):
        record_id, text, version = memory_write(i)
        if text is None:
            del state[record_id]
        else:
            state[record_id] = (text, {"write": i, "version": version})
    return state


# Writers: run in a process forked from the zygote, with the store the zygote opened.


def write_messages(store: Any, thread: str, start: int, ack: Ack) -> None:
    """Append messages ``start, start + 1, ...`` one per call, reporting each acknowledged one."""
    for i in range(start, start + 100_000):
        store.append(thread, Message(role="user", content=text_of(i), id=f"m{i:06d}"))
        ack(i)


def write_checkpoints(store: Any, thread: str, start: int, ack: Ack) -> None:
    """Put checkpoints ``start, ...`` in one chain, each one's list one item longer."""
    for i in range(start, start + 100_000):
        store.put(
            thread, f"c{i:06d}", Blob("json", b"{}"),
            parent_id=f"c{i - 1:06d}" if i else None, versions={"messages": i + 1},
            values={"messages": SequenceBlob("json", tuple(item(j) for j in range(i + 1)))},
            lease=LEASE,
        )  # fmt: skip
        ack(i)


def write_memories(store: Any, thread: str, start: int, ack: Ack) -> None:
    """Make memory writes ``start, ...`` (puts, upserts and deletes) one per call."""
    for i in range(start, start + 100_000):
        record_id, text, version = memory_write(i)
        if text is None:
            store.delete(NAMESPACE, record_id)
        else:
            store.put(NAMESPACE, text, {"write": i, "version": version}, id=record_id)
        ack(i)


WRITERS = {"threads": write_messages, "checkpoints": write_checkpoints, "memories": write_memories}


def open_kind(kind: str, url: str, options: dict[str, Any], setup: bool = False) -> Any:
    """The store of ``kind`` at ``url``."""
    if kind == "threads":
        return open_store(url, setup=setup, **options)
    if kind == "checkpoints":
        return open_checkpoint_store(url, setup=setup, **options)
    return open_memory_store(url, setup=setup, embedder=HashingEmbedder(MEMORY_DIMS), **options)


def zygote(kind: str, url: str, options: dict[str, Any], conn: Connection) -> None:
    """Open the store once, then for each ``(thread, start)`` request fork a writer: send its
    pid, forward each write it acknowledges, and once told ``"reap"``, its wait status."""
    store = open_kind(kind, url, options)
    writer = WRITERS[kind]
    while (request := conn.recv()) is not None:
        thread, start = request
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            run_writer(writer, store, thread, start, write_end)
        os.close(write_end)
        conn.send(pid)
        pending = b""
        while chunk := os.read(read_end, 4096):  # until the writer is dead
            pending += chunk
            whole = len(pending) - len(pending) % 8
            for k in range(0, whole, 8):
                conn.send(int.from_bytes(pending[k : k + 8], "little"))
            pending = pending[whole:]
        os.close(read_end)
        conn.recv()  # "reap": the test has killed it (until then its pid cannot be reused)
        conn.send(("exit", os.waitpid(pid, 0)[1]))


def run_writer(
    writer: Callable[[Any, str, int, Ack], None], store: Any, thread: str, start: int, fd: int
) -> NoReturn:
    """The forked writer: runs until killed, reporting each acknowledged write on ``fd``."""

    def ack(i: int) -> None:
        os.write(fd, i.to_bytes(8, "little"))  # eight bytes: one atomic pipe write

    code = 0
    try:
        writer(store, thread, start, ack)
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


class Writers:
    """A zygote for one store, and the kill points run from it."""

    def __init__(self, kind: str, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self._conn, theirs = context.Pipe()
        self._process = context.Process(
            target=zygote, args=(kind, url, options, theirs), daemon=True
        )
        self._process.start()
        theirs.close()
        self._sessions = SessionWatch(url)

    def _recv(self) -> Any:
        if not self._conn.poll(60):
            raise AssertionError("the zygote stopped answering")
        return self._conn.recv()

    def kill_at_random(self, thread: str, start: int) -> list[int]:
        """Run one writer from ``start`` and SIGKILL it a random moment after its first
        acknowledged write (or before it, now and then); returns the writes it reported, once
        the server (if any) has finished with the dead writer's session."""
        self._conn.send((thread, start))
        pid = self._recv()
        acked: list[int] = []
        # Mostly mid-write; now and then while it connects.
        if random.random() < 0.9:
            acked.append(self._recv())
        time.sleep(random.uniform(0, MAX_DELAY))
        os.kill(pid, signal.SIGKILL)
        self._conn.send("reap")
        while not isinstance(message := self._recv(), tuple):
            acked.append(message)
        status = message[1]
        died = f"the writer died on its own (wait status {status}): see its traceback above"
        assert os.WIFSIGNALED(status), died
        assert os.WTERMSIG(status) == signal.SIGKILL, died
        self._sessions.wait_until_gone()
        return acked

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(30)
        self._conn.close()
        self._sessions.close()


class SessionWatch:
    """On PostgreSQL, waits until the server has closed a killed writer's sessions: a COMMIT
    it sent just before dying may still be applied, and the next check must see it."""

    def __init__(self, url: str) -> None:
        self.name = url.partition("application_name=")[2]
        self.admin = psycopg.connect(PG_URL, autocommit=True) if self.name else None

    def wait_until_gone(self) -> None:
        if self.admin is None:
            return
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        for _ in range(1000):
            row = self.admin.execute(query, (self.name,)).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.005)
        raise AssertionError("the killed writer's PostgreSQL sessions did not end")

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()


def reader_url(url: str) -> str:
    """The URL the checking side opens: the writers' without their application name."""
    return url.partition("?")[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend whose writers are killed."""
    return str(request.param)


@pytest.fixture
def target(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A URL and options where every kind of store is set up (dropped afterwards)."""
    if backend == "sqlite":
        url, options = f"sqlite:///{tmp_path / 'crash.db'}", {}
        made = open_store(url)
    else:
        made = postgres_store()
        schema = made.tables.schema  # type: ignore[attr-defined]
        url = f"{PG_URL}?application_name=memfold-crash-{uuid.uuid4().hex[:12]}"
        options = {"schema": schema}
    for kind in ("checkpoints", "memories"):
        open_kind(kind, reader_url(url), options, setup=True).close()
    yield url, options
    drop_store(made)
    made.close()


@pytest.fixture
def writers(target: tuple[str, dict[str, Any]]) -> Iterator[Callable[[str], Writers]]:
    """Starts the zygote of a store kind on the target (stopped afterwards)."""
    made: list[Writers] = []

    def start(kind: str) -> Writers:
        made.append(Writers(kind, *target))
        return made[-1]

    yield start
    for w in made:
        w.close()


def check_integrity(url: str) -> None:
    """An SQLite file passes its own integrity check."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(reader_url(url).removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_killed_appenders_lose_no_acknowledged_message(
    target: tuple[str, dict[str, Any]], writers: Callable[[str], Writers]
) -> None:
    """After each kill the thread holds every acknowledged message, intact and in order, and
    nothing but an unbroken run of whole messages; the store then reopens cleanly."""
    url, options = target
    kill_points = writers("threads")
    acknowledged = stored = 0
    with open_store(reader_url(url), **options) as reader:
        for _ in range(KILLS):
            acked = kill_points.kill_at_random("crash", stored)
            assert acked == list(range(stored, stored + len(acked)))
            acknowledged += len(acked)
            count = reader.count("crash")
            assert count >= stored + len(acked), "an acknowledged message is missing"
            assert count <= stored + len(acked) + 1, "more than the one unreported write"
            new = reader.load("crash", last=count - stored) if count > stored else []
            assert [m.id for m in new] == [f"m{i:06d}" for i in range(stored, count)]
            assert [m.content for m in new] == [text_of(i) for i in range(stored, count)]
            stored = count
    assert acknowledged >= KILLS // 2, "most writers should get a write in before the kill"
    check_integrity(url)
    with open_store(reader_url(url), **options) as reopened:
        messages = reopened.load("crash")
        assert [m.id for m in messages] == [f"m{i:06d}" for i in range(stored)]
        assert [m.content for m in messages] == [text_of(i) for i in range(stored)]
        assert reopened.get_thread("crash").message_count == stored


def test_killed_checkpointers_lose_no_acknowledged_checkpoint(
    target: tuple[str, dict[str, Any]], writers: Callable[[str], Writers]
) -> None:
    """After each kill every acknowledged checkpoint reads back with its whole list, the chain
    is unbroken, and no delta is left without the checkpoint that wrote it."""
    url, options = target
    kill_points = writers("checkpoints")
    total = 0
    with open_checkpoint_store(reader_url(url), **options) as reader:
        for chain in range(0, KILLS, CHAIN):
            thread, stored = f"crash-{chain}", 0
            for _ in range(min(CHAIN, KILLS - chain)):
                acked = kill_points.kill_at_random(thread, stored)
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
    check_integrity(url)
    with open_checkpoint_store(reader_url(url), **options) as reopened:
        assert reopened.stats().checkpoints == total


def test_killed_memory_writers_lose_no_acknowledged_write(
    target: tuple[str, dict[str, Any]], writers: Callable[[str], Writers]
) -> None:
    """After each kill the memories are exactly what the acknowledged puts, upserts and
    deletes make (or those and the one unreported write), each record's vector and search
    index match its text, and the store reopens with the same records."""
    url, options = target
    kill_points = writers("memories")
    embedder = HashingEmbedder(MEMORY_DIMS)
    acknowledged = stored = 0
    with open_memory_store(reader_url(url), embedder=embedder, **options) as reader:
        for _ in range(KILLS):
            acked = kill_points.kill_at_random("", stored)
            assert acked == list(range(stored, stored + len(acked)))
            acknowledged += len(acked)
            found = {
                r.id: (r.text, dict(r.value)) for r in reader.list_records(NAMESPACE, limit=10_000)
            }
            done = stored + len(acked)
            if found != memories_after(done):
                assert found == memories_after(done + 1), "not what the acknowledged writes made"
                done += 1
            touched = [memory_write(i)[0] for i in range(stored, done)]
            present = [record_id for record_id in touched if record_id in found]
            for record_id in present:
                record = reader.get(NAMESPACE, record_id, include_embedding=True)
                assert record is not None
                assert record.embedding is not None
                expected = embedder.embed([record.text])[0]
                assert np.allclose(record.embedding, expected, atol=1e-6), record_id
            if present:  # the newest write is found by its text
                hits = reader.search(NAMESPACE, found[present[-1]][0], k=1)
                assert [h.record.id for h in hits] == present[-1:]
            stored = done
    assert acknowledged >= KILLS // 2, "most writers should get a write in before the kill"
    check_integrity(url)
    with open_memory_store(reader_url(url), embedder=embedder, **options) as reopened:
        assert reopened.count(NAMESPACE) == len(memories_after(stored))
