"""The tiered store: Redis in front of PostgreSQL, surviving Redis going away and coming back.

The behaviour suite runs on it too (``tiered`` in `tests.support.BACKENDS`); these tests cover
what only a tiered store does. Fault tests kill their own ``redis-server``, never the shared one.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
import redis

import memfold
from memfold import BackendUnavailable, Message, ops
from memfold.backends.memory import MemoryThreadStore
from memfold.backends.redis import RedisThreadStore
from memfold.backends.tiered import TieredThreadStore
from tests.support import PG_URL, REDIS_URL, drop_store, postgres_store, redis_store

T = TypeVar("T")


class OwnRedis:
    """A private ``redis-server`` on a free port, killed and restarted at will."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0?socket_timeout=1&socket_connect_timeout=1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def durable() -> Iterator[memfold.BaseThreadStore]:
    store = postgres_store()
    yield store
    drop_store(store)
    store.close()


def msg(text: str) -> Message:
    return Message(role="user", content=text)


def test_killing_redis_mid_run_loses_no_acknowledged_message(
    own_redis: OwnRedis, durable: memfold.BaseThreadStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Every append acknowledged before, during and after Redis dies is in PostgreSQL, reads
    keep working without Redis, and once Redis is back reads are served from it again."""
    hot = RedisThreadStore.from_url(own_redis.url)
    store = TieredThreadStore(hot, durable)
    store.setup()
    acknowledged: list[str] = []
    with caplog.at_level(logging.WARNING, logger="memfold.tiered"):
        for i in range(60):
            if i == 25:
                own_redis.kill()
            stored = store.append("t", msg(f"m{i}"))
            acknowledged.append(str(stored[0].id))
            if i % 10 == 0:
                assert [m.id for m in store.load("t")] == acknowledged
    assert [m.id for m in durable.load("t")] == acknowledged
    assert [m.id for m in store.load("t", last=5)] == acknowledged[-5:]
    assert store.count("t") == 60
    warnings = [r for r in caplog.records if "hot store unavailable" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one warning for dozens of failures

    own_redis.start()  # empty: the server keeps nothing on disk
    assert [m.id for m in store.load("t")] == acknowledged
    assert [m.id for m in hot.load("t")] == acknowledged  # warmed again
    store.append("t", msg("after"))
    assert hot.count("t") == durable.count("t") == 61
    store.close()


async def test_async_writes_survive_redis_dying(
    own_redis: OwnRedis, durable: memfold.BaseThreadStore
) -> None:
    """The async twin also commits to PostgreSQL first and carries on without Redis."""
    hot = RedisThreadStore.from_url(own_redis.url)
    store = TieredThreadStore(hot, durable)
    await store.asetup()
    acknowledged = [str(m.id) for m in await store.aappend("t", [msg("a"), msg("b")])]
    assert [m.id for m in await store.aload("t")] == acknowledged
    own_redis.kill()
    acknowledged += [str(m.id) for m in await store.aappend("t", msg("c"))]
    assert [m.id for m in await store.aload("t")] == acknowledged
    assert [m.id for m in await durable.aload("t")] == acknowledged
    own_redis.start()
    assert [m.id for m in await store.aload("t")] == acknowledged
    assert [m.id for m in await hot.aload("t")] == acknowledged
    await store.aclose()


class Recording(MemoryThreadStore):
    """A memory store that records the loads it serves and can be made unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.down = False

    def execute(self, op: ops.Op[T]) -> T:
        if self.down:
            raise BackendUnavailable("down for the test")
        self.loads += isinstance(op, ops.LoadThread)
        return super().execute(op)

    async def aexecute(self, op: ops.Op[T]) -> T:
        return self.execute(op)


def test_warm_reads_come_from_the_hot_store() -> None:
    """A cold thread is read from the durable store once and then served hot."""
    hot, durable = Recording(), Recording()
    durable.append("t", [msg("a"), msg("b")])  # written behind the tiered store's back
    store = TieredThreadStore(hot, durable)
    assert [m.content for m in store.load("t")] == ["a", "b"]
    assert durable.loads == 1
    for _ in range(3):
        assert [m.content for m in store.load("t", last=1)] == ["b"]
    assert durable.loads == 1
    assert hot.loads == 3


def test_a_hot_store_that_missed_a_write_never_serves_it_stale() -> None:
    """Threads written while the hot store was down are dropped from it when it is back."""
    hot, durable = Recording(), Recording()
    store = TieredThreadStore(hot, durable)
    [first] = store.append("t", msg("old"))
    assert [m.content for m in store.load("t")] == ["old"]
    hot.down = True
    store.update_messages("t", Message(role="user", content="new", id=first.id))
    hot.down = False
    assert [m.content for m in store.load("t")] == ["new"]
    assert [m.content for m in hot.load("t")] == ["new"]


def test_a_partial_hot_thread_is_not_warm() -> None:
    """Appending to a thread the hot store never held does not make it serve the tail alone."""
    hot, durable = Recording(), Recording()
    durable.append("t", [msg("a"), msg("b")])
    store = TieredThreadStore(hot, durable)
    store.append("t", msg("c"))
    assert hot.count("t") == 0  # the tail alone is not copied: it follows nothing hot
    assert [m.content for m in store.load("t")] == ["a", "b", "c"]
    assert hot.count("t") == 3


def test_capabilities_and_search_are_the_durable_stores(
    durable: memfold.BaseThreadStore,
) -> None:
    """Search works because the durable store has it, although Redis has not."""
    store = TieredThreadStore(redis_store(), durable)
    assert store.capabilities == durable.capabilities
    store.append("t", msg("the quick brown fox"))
    assert [h.message.content for h in store.search("fox")] == ["the quick brown fox"]
    drop_store(store)


def test_open_store_reads_a_tiered_url(durable: memfold.BaseThreadStore) -> None:
    """``tiered+redis://…?durable=<url-encoded URL>`` opens Redis in front of that store."""
    schema: Any = getattr(durable, "tables").schema  # noqa: B009
    prefix = f"memfold-test:{uuid.uuid4().hex}:"
    redis_url = REDIS_URL.replace("redis://", "tiered+redis://", 1)
    url = f"{redis_url}?key_prefix={quote(prefix)}&durable={quote(PG_URL, safe='')}"
    store = memfold.open_store(url, durable_options={"schema": schema})
    assert isinstance(store, TieredThreadStore)
    assert store.hot.name == "redis"
    assert store.durable.name == "postgresql"
    store.append("t", msg("hi"))
    assert durable.count("t") == 1
    drop_store(store.hot)
    store.close()


@pytest.mark.parametrize(
    "url",
    ["tiered+redis://127.0.0.1:6379/0", "tiered://x?durable=sqlite://", "tiered+redis://h?"
     "durable=tiered%2Bredis%3A%2F%2Fh%3Fdurable%3Dsqlite%3A%2F%2F"],
)  # fmt: skip
def test_bad_tiered_urls_are_refused(url: str) -> None:
    """A tiered URL needs a hot scheme and exactly one durable URL, which is not tiered."""
    with pytest.raises(memfold.InvalidInput):
        memfold.open_store(url, setup=False)


class PausedAfterCommit(MemoryThreadStore):
    """A durable store that, once it has committed the append of a message with content
    ``pause_on``, holds the appending thread until released (a process slowed down between
    its durable and its hot write)."""

    def __init__(self, pause_on: str) -> None:
        super().__init__()
        self.pause_on = pause_on
        self.committed = threading.Event()
        self.release = threading.Event()

    def execute(self, op: ops.Op[T]) -> T:
        result = super().execute(op)
        if isinstance(op, ops.AppendMessages) and op.messages[0].content == self.pause_on:
            self.committed.set()
            self.release.wait(10)
        return result


def test_a_late_hot_append_never_reorders_the_hot_copy() -> None:
    """An append whose hot write lands after a later append's drops the hot copy instead of
    putting its message after the later one: every read keeps the durable order."""
    hot, durable = MemoryThreadStore(), PausedAfterCommit(pause_on="b")
    slow, fast = TieredThreadStore(hot, durable), TieredThreadStore(hot, durable)
    slow.append("t", msg("a"))
    assert [m.content for m in fast.load("t")] == ["a"]  # warm: served hot from here on
    writer = threading.Thread(target=slow.append, args=("t", msg("b")))
    writer.start()
    assert durable.committed.wait(10)
    fast.append("t", msg("c"))  # after b in the durable store, before it in the hot one
    durable.release.set()
    writer.join()
    assert [m.content for m in durable.load("t")] == ["a", "b", "c"]
    assert [m.content for m in fast.load("t")] == ["a", "b", "c"]
    assert [m.content for m in slow.load("t")] == ["a", "b", "c"]
    assert [m.content for m in hot.load("t")] == ["a", "b", "c"]  # warmed again, in order


class LateWarmUp(MemoryThreadStore):
    """A hot store where, once armed, a slow warm-up's stale copy of a thread lands right after
    the next count of it (between a reader's check and its read)."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: list[Message] | None = None

    def execute(self, op: ops.Op[T]) -> T:
        result = super().execute(op)
        if self.stale is not None and isinstance(op, ops.CountMessages):
            stale, self.stale = self.stale, None
            self.replace(op.thread_id, stale)
        return result


@pytest.mark.parametrize("last", [None, 1])
def test_a_late_warm_up_never_serves_a_stale_copy(last: int | None) -> None:
    """A warm-up that read the durable store before the last append and writes its copy
    between a reader's warmth check and its read does not hide that append from the reader."""
    hot, durable = LateWarmUp(), MemoryThreadStore()
    store = TieredThreadStore(hot, durable)
    first = store.append("t", msg("a"))
    assert [m.content for m in store.load("t")] == ["a"]  # warm
    store.append("t", msg("b"))
    hot.stale = first
    assert [m.content for m in store.load("t", last=last)] == ["a", "b"][-(last or 2) :]
    assert [m.content for m in hot.load("t")] == ["a", "b"]  # warmed again
