"""The tiered checkpoint store: Redis in front of PostgreSQL, surviving Redis going away.

The behaviour suite runs on it too (``tiered`` in ``CHECKPOINT_BACKENDS``); these tests cover
what only a tiered store does. They kill their own ``redis-server``, never the shared one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import TypeVar

import pytest

from memfold import checkpoint_ops
from memfold.backends.memory_checkpoints import MemoryCheckpointStore
from memfold.backends.redis.checkpoint_store import IsWhole, RedisCheckpointStore
from memfold.backends.tiered_checkpoints import TieredCheckpointStore
from memfold.checkpoints import BaseCheckpointStore, Blob, PendingWrite, SequenceBlob
from memfold.ops import Op
from tests.backends.test_tiered import OwnRedis
from tests.support import drop_checkpoint_store, postgres_checkpoint_store, redis_checkpoint_store

T = TypeVar("T")

BODY = Blob("json", b'{"v":4}')


def messages(n: int) -> SequenceBlob:
    return SequenceBlob("json", tuple(f'"message {i}"'.encode() for i in range(n)))


def cid(i: int) -> str:
    return f"ckpt-{i:04d}"


@pytest.fixture
def server() -> Iterator[OwnRedis]:
    """A private redis-server the test may kill."""
    own = OwnRedis()
    own.start()
    yield own
    own.kill()


@pytest.fixture
def durable() -> Iterator[BaseCheckpointStore]:
    """A fresh PostgreSQL checkpoint store."""
    store = postgres_checkpoint_store()
    yield store
    store.close()
    drop_checkpoint_store(store)


def put(store: BaseCheckpointStore, i: int) -> None:
    """Checkpoint i of thread t, one message longer than its parent, with one pending write."""
    store.put(
        "t", cid(i), BODY, parent_id=cid(i - 1) if i else None, metadata={"step": i},
        versions={"messages": i + 1}, values={"messages": messages(i + 1)},
    )  # fmt: skip
    store.put_writes("t", cid(i), [PendingWrite("task", 0, "out", Blob("json", b"%d" % i))])


def test_killing_redis_mid_run_loses_no_acknowledged_checkpoint(
    server: OwnRedis, durable: BaseCheckpointStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Every checkpoint acknowledged before, during and after Redis dies is in PostgreSQL with
    its values and writes; reads keep working without Redis, and once Redis is back (empty) the
    thread is warmed into it again and served from it."""
    hot = RedisCheckpointStore.from_url(server.url, key_prefix=f"t-{uuid.uuid4().hex}:")
    store = TieredCheckpointStore(hot, durable)
    store.setup()
    acknowledged: list[str] = []
    with caplog.at_level(logging.WARNING, logger="memfold.tiered"):
        for i in range(40):
            if i == 15:
                server.kill()
            put(store, i)
            acknowledged.append(cid(i))
            if i % 5 == 0:
                latest = store.get("t")
                assert latest is not None
                assert (latest.checkpoint_id, latest.values["messages"]) == (
                    cid(i),
                    messages(i + 1),
                )
    newest_first = acknowledged[::-1]
    assert [c.checkpoint_id for c in durable.list_checkpoints("t")] == newest_first
    assert [c.checkpoint_id for c in store.list_checkpoints("t")] == newest_first
    for i in (0, 14, 15, 39):
        got = durable.get("t", checkpoint_id=cid(i))
        assert got is not None
        assert got.values["messages"] == messages(i + 1)
        assert [w.value.data for w in got.writes] == [b"%d" % i]
    warnings = [r for r in caplog.records if "hot store unavailable" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one warning for dozens of failures

    server.start()  # empty: the server keeps nothing on disk
    assert not hot.execute(IsWhole("default", "t"))
    assert [c.checkpoint_id for c in store.list_checkpoints("t")] == newest_first
    assert hot.execute(IsWhole("default", "t"))  # warmed again
    put(store, 40)
    from_hot = hot.get("t")
    assert from_hot is not None
    assert (from_hot.checkpoint_id, from_hot.values["messages"]) == (cid(40), messages(41))
    assert len(hot.list_checkpoints("t")) == len(durable.list_checkpoints("t")) == 41
    store.close()


async def test_async_reads_and_writes_survive_redis_dying(
    server: OwnRedis, durable: BaseCheckpointStore
) -> None:
    """The async twin also commits to PostgreSQL first and reads on without Redis."""
    hot = RedisCheckpointStore.from_url(server.url, key_prefix=f"t-{uuid.uuid4().hex}:")
    store = TieredCheckpointStore(hot, durable)
    await store.asetup()
    for i in range(6):
        if i == 3:
            server.kill()
        await store.aput(
            "t", cid(i), BODY, parent_id=cid(i - 1) if i else None,
            versions={"messages": i + 1}, values={"messages": messages(i + 1)},
        )  # fmt: skip
        latest = await store.aget("t")
        assert latest is not None
        assert latest.values["messages"] == messages(i + 1)
    assert len(await durable.alist_checkpoints("t")) == 6
    await store.aclose()


class PausedAfterList(MemoryCheckpointStore):
    """A durable store that, once armed, holds the thread that next lists a thread's
    checkpoints until released (a warm-up slowed down after reading the durable store)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.listed = threading.Event()
        self.release = threading.Event()

    def execute(self, op: Op[T]) -> T:
        result = super().execute(op)
        if self.armed and isinstance(op, checkpoint_ops.ListCheckpoints):
            self.armed = False
            self.listed.set()
            self.release.wait(10)
        return result


def test_a_checkpoint_stored_during_a_warm_up_stays_in_the_hot_copy() -> None:
    """A checkpoint committed while another process copies the thread into Redis is in the
    copy once it is marked whole: reads never go back to an older newest checkpoint."""
    hot, durable = redis_checkpoint_store(), PausedAfterList()
    assert isinstance(hot, RedisCheckpointStore)
    reader, writer = TieredCheckpointStore(hot, durable), TieredCheckpointStore(hot, durable)
    try:
        writer.put("t", "c1", BODY)
        durable.armed = True
        warming = threading.Thread(target=reader.get, args=("t",))
        warming.start()
        assert durable.listed.wait(10)
        writer.put("t", "c2", BODY, parent_id="c1")
        durable.release.set()
        warming.join()
        assert hot.execute(IsWhole("default", "t")) is not None
        for store in (reader, writer, hot):
            newest = store.get("t")
            assert newest is not None
            assert newest.checkpoint_id == "c2"
            assert [c.checkpoint_id for c in store.list_checkpoints("t")] == ["c2", "c1"]
    finally:
        drop_checkpoint_store(hot)
        hot.close()


def test_writes_stored_before_their_checkpoint_survive_a_warm_up(
    durable: BaseCheckpointStore,
) -> None:
    """LangGraph may store a step's writes before its checkpoint: a read that warms the thread
    in between copies them too (the warm-up emptied the hot copy and listed only stored
    checkpoints, so the checkpoint was then served hot without its writes)."""
    hot = redis_checkpoint_store()
    store = TieredCheckpointStore(hot, durable)
    write = PendingWrite("task", 0, "log", Blob("json", b'"hello"'))
    try:
        store.put("t", cid(0), BODY)
        store.put_writes("t", cid(1), [write])
        assert store.get("t") is not None  # warms the thread, before c1 is stored
        store.put("t", cid(1), BODY, parent_id=cid(0))
        assert hot.execute(IsWhole("default", "t")) is not None  # served hot
        for reader in (store, hot, durable):
            stored = reader.get("t", checkpoint_id=cid(1))
            assert stored is not None
            assert stored.writes == (write,)
    finally:
        drop_checkpoint_store(hot)
        hot.close()
