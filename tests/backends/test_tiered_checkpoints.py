"""The tiered checkpoint store: Redis in front of PostgreSQL, surviving Redis going away.

The behaviour suite runs on it too (``tiered`` in ``CHECKPOINT_BACKENDS``); these tests cover
what only a tiered store does. They kill their own ``redis-server``, never the shared one.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from memfold import checkpoint_ops
from memfold.backends.memory_checkpoints import MemoryCheckpointStore
from memfold.backends.redis.checkpoint_store import IsWhole, RedisCheckpointStore
from memfold.backends.tiered_checkpoints import TieredCheckpointStore
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    PendingWrite,
    SequenceBlob,
    open_checkpoint_store,
)
from memfold.errors import InvalidInput
from memfold.ops import Op
from tests.backends.test_tiered import OwnRedis
from tests.support import (
    PG_URL,
    REDIS_URL,
    drop_checkpoint_store,
    kill_at_marker,
    postgres_checkpoint_store,
    redis_checkpoint_store,
)

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


class PausedAfterPut(MemoryCheckpointStore):
    """A durable store that, once armed, holds the thread whose put it just committed until
    released (a writer between its durable and its hot write)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.committed = threading.Event()
        self.release = threading.Event()

    def execute(self, op: Op[T]) -> T:
        result = super().execute(op)
        if self.armed and isinstance(op, checkpoint_ops.PutCheckpoint):
            self.armed = False
            self.committed.set()
            self.release.wait(10)
        return result


def test_a_write_in_flight_keeps_reads_off_the_hot_copy() -> None:
    """Between a put's durable and hot writes the thread's hot copy is stale: reads then go to
    the durable store (the new checkpoint) without re-warming the thread, and once the write is
    done the copy, now holding it, is served again."""
    hot, durable = redis_checkpoint_store(), PausedAfterPut()
    assert isinstance(hot, RedisCheckpointStore)
    reader, writer = TieredCheckpointStore(hot, durable), TieredCheckpointStore(hot, durable)
    try:
        writer.put("t", "c1", BODY)
        assert reader.get("t") is not None  # warmed
        token = hot.execute(IsWhole("default", "t"))
        assert token is not None
        durable.armed = True
        putting = threading.Thread(
            target=writer.put, args=("t", "c2", BODY), kwargs={"parent_id": "c1"}
        )
        putting.start()
        assert durable.committed.wait(10)
        assert hot.execute(IsWhole("default", "t")) is None
        newest = reader.get("t")
        assert newest is not None
        assert newest.checkpoint_id == "c2"
        assert [c.checkpoint_id for c in reader.list_checkpoints("t")] == ["c2", "c1"]
        assert [c.checkpoint_id for c in hot.list_checkpoints("t")] == ["c1"]  # not re-warmed
        durable.release.set()
        putting.join()
        assert hot.execute(IsWhole("default", "t")) == token  # the same copy, served again
        assert [c.checkpoint_id for c in reader.list_checkpoints("t")] == ["c2", "c1"]
    finally:
        durable.release.set()
        drop_checkpoint_store(hot)
        hot.close()


class DiesBeforeHotPut(RedisCheckpointStore):
    """A hot store whose put of checkpoint c2 signals through a file and blocks until the
    process is killed: the put is committed durably, and never reaches Redis."""

    marker = ""

    def execute(self, op: Op[T]) -> T:
        if isinstance(op, checkpoint_ops.PutCheckpoint) and op.checkpoint_id == "c2":
            Path(self.marker).write_text("durable, not hot")
            time.sleep(120)  # killed here
        return super().execute(op)


def put_then_die(prefix: str, schema: str, marker: str) -> None:
    """Put c2 through a tiered store whose process dies between the two tiers."""
    hot = DiesBeforeHotPut.from_url(REDIS_URL, key_prefix=prefix)
    hot.marker = marker
    durable = open_checkpoint_store(PG_URL, schema=schema, setup=False)
    TieredCheckpointStore(hot, durable).put("t", "c2", BODY, parent_id="c1")


def test_a_writer_killed_between_the_tiers_leaves_no_stale_copy_served(
    durable: BaseCheckpointStore, tmp_path: Path
) -> None:
    """A process SIGKILLed after its put reached PostgreSQL and before it reached Redis: reads
    from another process return the new checkpoint, not the hot copy's older head (which a
    writer continuing from it would fork the thread from); once the dead write's mark is older
    than ``write_timeout``, a read warms the thread into Redis again."""
    hot = redis_checkpoint_store()
    assert isinstance(hot, RedisCheckpointStore)
    store = TieredCheckpointStore(hot, durable, write_timeout=1)
    try:
        store.put("t", "c1", BODY)
        assert store.get("t") is not None  # warmed: the hot copy is whole
        marker = tmp_path / "died"
        schema = durable.tables.schema  # type: ignore[attr-defined]
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=put_then_die, args=(hot.key_prefix, schema, str(marker)))
        child.start()
        kill_at_marker(child, marker, "its put reached PostgreSQL")

        assert [c.checkpoint_id for c in hot.list_checkpoints("t")] == ["c1"]  # stale
        newest = store.get("t")
        assert newest is not None
        assert newest.checkpoint_id == "c2"
        assert hot.execute(IsWhole("default", "t")) is None
        time.sleep(1.2)  # the dead write's mark is now older than write_timeout
        assert store.get("t") is not None  # re-warms the thread
        assert hot.execute(IsWhole("default", "t")) is not None
        store.put("t", "c3", BODY, parent_id="c2")
        for reader in (store, hot, durable):
            assert [c.checkpoint_id for c in reader.list_checkpoints("t")] == ["c3", "c2", "c1"]
    finally:
        drop_checkpoint_store(hot)
        store.close()


@pytest.mark.parametrize("timeout", [0, -1, 86_400, "10", True, float("nan")])
def test_a_bad_write_timeout_is_refused(timeout: Any) -> None:
    """write_timeout is a number of seconds in (0, 86400)."""
    hot = redis_checkpoint_store()
    with pytest.raises(InvalidInput, match="write_timeout"):
        TieredCheckpointStore(hot, MemoryCheckpointStore(), write_timeout=timeout)  # type: ignore[arg-type]
    drop_checkpoint_store(hot)
    hot.close()
