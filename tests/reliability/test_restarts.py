"""Restarting PostgreSQL or Redis under load: typed errors while it is down, recovery once it
is back, and no acknowledged write lost.

Writers (threads calling the sync API, or tasks on one event loop calling the async one) each
write and read their own thread, checkpoint chain or memory namespace in a loop while the
server is stopped and started again. Every failure must be `BackendUnavailable`; no call that
starts after the server is back may fail; each read sees the writer's acknowledged writes;
and afterwards the store holds every acknowledged write, exactly once and as written, plus
nothing but writes whose call failed (those may or may not have been stored).

The servers are private to this module (`tests.reliability.servers`): the shared ones on 5432
and 6379 are never restarted. PostgreSQL is stopped the hard way (``immediate``: sessions cut,
WAL replayed) under the sync API and the polite way (``fast``) under the async one; Redis is
killed with SIGKILL and replays its append-only file.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import pytest

from memfold import BackendUnavailable, Message, open_store
from memfold.backends.tiered import TieredThreadStore
from memfold.backends.tiered_checkpoints import TieredCheckpointStore
from memfold.checkpoints import Blob, Lease, SequenceBlob, open_checkpoint_store
from memfold.memories import open_memory_store
from memfold.recall.embedders import HashingEmbedder
from tests.reliability.servers import PrivatePostgres, PrivateRedis
from tests.support import MEMORY_DIMS

WRITERS = 3
DOWNTIME = 0.3  # seconds the server stays down
PROGRESS = 3  # writes each writer gets acknowledged before the outage, and again after it


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster with pgvector, for this module's tests."""
    import psycopg

    server = PrivatePostgres()
    try:
        server.start()
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    """A private Redis server that keeps acknowledged writes across restarts."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def text_of(writer: int, i: int) -> str:
    return f"writer {writer} write {i} " + "y" * (i * 53 % 700)


# Workloads: what a writer writes and reads, and what the store must hold afterwards.
# ``acked`` lists the writes the store acknowledged, ``maybe`` those whose call failed.


class Workload:
    """One store kind's writes, read-your-writes checks and final check, sync or async."""

    def __init__(self, store: Any, use_async: bool) -> None:
        self.store = store
        self.use_async = use_async

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.use_async:
            return await getattr(self.store, "a" + name)(*args, **kwargs)
        return getattr(self.store, name)(*args, **kwargs)

    async def write(self, writer: int, i: int) -> None:
        raise NotImplementedError

    async def read(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        """Check that a read sees the writer's acknowledged writes."""
        raise NotImplementedError

    async def check(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        """Check everything the writer's writes left in the store."""
        raise NotImplementedError


class Threads(Workload):
    """Appends to one thread per writer."""

    async def write(self, writer: int, i: int) -> None:
        message = Message(role="user", content=text_of(writer, i), id=f"m{i:06d}")
        await self.call("append", f"w{writer}", message)

    async def read(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        last = await self.call("load", f"w{writer}", last=1)
        if acked:
            assert last, "an acknowledged message is missing"
            i = int(last[0].id[1:])
            assert i >= acked[-1], "a read missed an acknowledged message"
            assert i in acked or i in maybe

    async def check(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        messages = await self.call("load", f"w{writer}")
        stored = [int(m.id[1:]) for m in messages]
        assert stored == sorted(set(stored)), "messages out of order or twice"
        assert set(acked) <= set(stored), "an acknowledged message is missing"
        assert set(stored) <= set(acked) | set(maybe), "a message nobody wrote"
        assert [m.content for m in messages] == [text_of(writer, i) for i in stored]
        assert await self.call("count", f"w{writer}") == len(stored)


def item(i: int) -> bytes:
    return json.dumps({"n": i}).encode()


class Checkpoints(Workload):
    """One chain of checkpoints per writer, under the writer's lease, each carrying a list one
    item longer than its parent's (stored as deltas)."""

    async def write(self, writer: int, i: int) -> None:
        await self.call(
            "put", f"w{writer}", f"c{i:06d}", Blob("json", item(i)),
            parent_id=f"c{i - 1:06d}" if i else None, versions={"messages": i + 1},
            values={"messages": SequenceBlob("json", tuple(item(j) for j in range(i + 1)))},
            lease=Lease(f"writer-{writer}", 60),
        )  # fmt: skip

    async def read(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        newest = await self.call("get", f"w{writer}")
        if acked:
            assert newest is not None, "an acknowledged checkpoint is missing"
            i = int(newest.checkpoint_id[1:])
            assert i >= acked[-1], "a read missed an acknowledged checkpoint"
            assert i in acked or i in maybe
            assert newest.values["messages"].items == tuple(item(j) for j in range(i + 1))

    async def check(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        listed = await self.call("list_checkpoints", f"w{writer}", limit=10_000)
        stored = sorted(int(c.checkpoint_id[1:]) for c in listed)
        assert len(stored) == len(set(stored))
        assert set(acked) <= set(stored), "an acknowledged checkpoint is missing"
        assert set(stored) <= set(acked) | set(maybe), "a checkpoint nobody wrote"
        for i in stored:
            got = await self.call("get", f"w{writer}", checkpoint_id=f"c{i:06d}")
            assert got.body == Blob("json", item(i))
            assert got.values["messages"].items == tuple(item(j) for j in range(i + 1)), i


class Memories(Workload):
    """Puts and upserts in one namespace per writer: write ``i`` stores record ``i // 2``,
    new when ``i`` is even, replaced when it is odd."""

    async def write(self, writer: int, i: int) -> None:
        record_id = f"r{i // 2:06d}"
        await self.call("put", ("t", f"w{writer}"), text_of(writer, i), {"i": i}, id=record_id)

    async def read(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        if acked:
            record = await self.call("get", ("t", f"w{writer}"), f"r{acked[-1] // 2:06d}")
            assert record is not None, "an acknowledged memory is missing"
            assert record.value["i"] >= acked[-1], "a read missed an acknowledged upsert"
            assert record.text == text_of(writer, record.value["i"])

    async def check(self, writer: int, acked: list[int], maybe: list[int]) -> None:
        namespace = ("t", f"w{writer}")
        records = await self.call("list_records", namespace, limit=10_000)
        found = {r.id: r for r in records}
        written = set(acked) | set(maybe)
        for k in sorted({i // 2 for i in written}):
            writes = [i for i in (2 * k, 2 * k + 1) if i in written]
            last_acked = max((i for i in writes if i in acked), default=None)
            record = found.pop(f"r{k:06d}", None)
            if record is None:
                assert last_acked is None, f"acknowledged memory r{k:06d} is missing"
                continue
            assert record.value["i"] in writes, "a memory nobody wrote"
            assert last_acked is None or record.value["i"] >= last_acked, "an upsert is lost"
            assert record.text == text_of(writer, record.value["i"])
        assert not found, "memories nobody wrote"
        if self.store.name != "redis":  # plain Redis has no search
            newest = max(acked)
            hits = await self.call("search", namespace, text_of(writer, newest), k=1)
            assert [h.record.id for h in hits] == [f"r{newest // 2:06d}"]


WORKLOADS: dict[str, type[Workload]] = {
    "threads": Threads,
    "checkpoints": Checkpoints,
    "memories": Memories,
}


# The load and the outage.


class Load:
    """Writers that write and read in a loop until stopped, and the record of what happened."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.acked: list[list[int]] = [[] for _ in range(WRITERS)]
        self.maybe: list[list[int]] = [[] for _ in range(WRITERS)]
        self.unavailable = 0
        self.wrong: list[str] = []  # failures that break a promise
        self.stop = threading.Event()
        self._up = True
        self._generation = 0  # bumped when the server goes down and when it is back

    def going_down(self) -> None:
        self._up, self._generation = False, self._generation + 1

    def back_up(self) -> None:
        self._up, self._generation = True, self._generation + 1

    async def writer(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            if await self._attempt(partial(self.workload.write, w, i)):
                self.acked[w].append(i)
            else:
                self.maybe[w].append(i)
            await self._attempt(partial(self.workload.read, w, self.acked[w], self.maybe[w]))
            i += 1

    async def _attempt(self, work: Callable[[], Awaitable[None]]) -> bool:
        up, generation = self._up, self._generation
        try:
            await work()
        except BackendUnavailable as exc:
            self.unavailable += 1
            if up and generation == self._generation:
                self.wrong.append(f"failed while the server was up: {exc!r}")
            await asyncio.sleep(0.01)
            return False
        except Exception:
            self.wrong.append(traceback.format_exc())
            await asyncio.sleep(0.01)
            return False
        return True

    def wait_for_progress(self) -> None:
        """Wait until every writer has had `PROGRESS` more writes acknowledged."""
        wanted = [len(a) + PROGRESS for a in self.acked]
        deadline = time.monotonic() + 60
        while any(len(a) < n for a, n in zip(self.acked, wanted, strict=True)):
            assert not self.wrong, self.wrong[0]
            assert time.monotonic() < deadline, "the writers made no progress"
            time.sleep(0.01)


def restart(server: PrivatePostgres | PrivateRedis, load: Load, mode: str) -> None:
    """Make progress, take ``server`` down for `DOWNTIME`, bring it back, make progress again,
    then stop the load."""
    try:
        load.wait_for_progress()
        load.going_down()
        if isinstance(server, PrivatePostgres):
            server.stop(mode)
        else:
            server.kill()
        time.sleep(DOWNTIME)
        server.start()
        load.back_up()
        load.wait_for_progress()
    finally:
        load.stop.set()


def run_load(workload: Workload, server: PrivatePostgres | PrivateRedis) -> Load:
    """Run the writers through one restart of ``server``: threads on the sync API, tasks on one
    event loop on the async one; then check what each writer left."""
    load = Load(workload)
    mode = "fast" if workload.use_async else "immediate"
    restarter = threading.Thread(target=restart, args=(server, load, mode))
    restarter.start()
    if workload.use_async:

        async def writers() -> None:
            await asyncio.gather(*(load.writer(w) for w in range(WRITERS)))

        asyncio.run(writers())
    else:
        threads = [
            threading.Thread(target=asyncio.run, args=(load.writer(w),)) for w in range(WRITERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    restarter.join()
    assert not load.wrong, "\n".join(load.wrong[:3])

    async def check() -> None:
        for w in range(WRITERS):
            await workload.check(w, load.acked[w], load.maybe[w])
        if workload.use_async:
            await workload.store.aclose()

    asyncio.run(check())
    return load


def open_kind(kind: str, url: str, **options: Any) -> Any:
    if kind == "threads":
        return open_store(url, **options)
    if kind == "checkpoints":
        return open_checkpoint_store(url, **options)
    return open_memory_store(url, embedder=HashingEmbedder(MEMORY_DIMS), **options)


def schema() -> dict[str, str]:
    return {"schema": f"restart_{uuid.uuid4().hex}"}


def prefix() -> dict[str, str]:
    return {"key_prefix": f"restart:{uuid.uuid4().hex}:"}


KINDS = ["threads", "checkpoints", "memories"]
SYNC_ASYNC = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@SYNC_ASYNC
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["postgresql", "redis"])
def test_a_server_restart_loses_no_acknowledged_write(
    request: pytest.FixtureRequest, backend: str, kind: str, use_async: bool
) -> None:
    """Writers get only BackendUnavailable while the server restarts, and none after it."""
    if backend == "postgresql":
        server: PrivatePostgres | PrivateRedis = request.getfixturevalue("postgres")
        store = open_kind(kind, server.url, **schema())
    else:
        server = request.getfixturevalue("redis_server")
        store = open_kind(kind, server.url, **prefix())
    load = run_load(WORKLOADS[kind](store, use_async), server)
    assert load.unavailable > 0, "the outage went unnoticed: the test proved nothing"
    store.close()


def tiered(kind: str, postgres: PrivatePostgres, redis_server: PrivateRedis) -> Any:
    hot = open_kind(kind, redis_server.url, **prefix())
    durable = open_kind(kind, postgres.url, **schema())
    if kind == "threads":
        return TieredThreadStore(hot, durable)
    return TieredCheckpointStore(hot, durable)


@SYNC_ASYNC
@pytest.mark.parametrize("kind", ["threads", "checkpoints"])
def test_a_tiered_store_rides_out_restarts_of_either_tier(
    postgres: PrivatePostgres, redis_server: PrivateRedis, kind: str, use_async: bool
) -> None:
    """Restarting the durable tier (PostgreSQL) gives BackendUnavailable while it is down;
    restarting the hot tier (Redis) is not even noticed; neither loses a write."""
    store = tiered(kind, postgres, redis_server)
    load = run_load(WORKLOADS[kind](store, use_async), postgres)
    assert load.unavailable > 0, "the outage went unnoticed: the test proved nothing"
    store.close()
    store = tiered(kind, postgres, redis_server)
    load = run_load(WORKLOADS[kind](store, use_async), redis_server)
    assert load.unavailable == 0, "a hot-tier outage reached the caller"
    store.close()
