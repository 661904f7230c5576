"""The checkpoint-store behaviour every backend shares, through the sync and async APIs.

A backend joins the suite by adding its name to ``CHECKPOINT_BACKENDS`` and a branch to
``make_checkpoint_store``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import memfold.checkpoints
from memfold import Conflict, InvalidInput, NotFound
from memfold.checkpoint_history import ChannelHistory, channel_history
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    DeltaPolicy,
    Lease,
    PendingWrite,
    RetentionPolicy,
    SequenceBlob,
    open_checkpoint_store,
)
from memfold.flows import arun, run
from tests.support import (
    Api,
    drop_checkpoint_store,
    postgres_checkpoint_store,
    redis_checkpoint_store,
    tiered_checkpoint_store,
)

CHECKPOINT_BACKENDS = ["memory", "sqlite", "postgresql", "redis", "tiered"]

BODY = Blob("json", b'{"v":4}')


def make_checkpoint_store(backend: str, tmp_path: Path, **options: Any) -> BaseCheckpointStore:
    """A fresh checkpoint store of ``backend`` whose files live in ``tmp_path``."""
    if backend == "memory":
        return open_checkpoint_store("memory://", **options)
    if backend == "sqlite":
        return open_checkpoint_store(f"sqlite:///{tmp_path / 'checkpoints.db'}", **options)
    if backend == "postgresql":
        return postgres_checkpoint_store(**options)
    if backend == "redis":
        return redis_checkpoint_store(**options)
    if backend == "tiered":
        return tiered_checkpoint_store(**options)
    raise ValueError(f"no checkpoint backend {backend!r}")


@pytest.fixture(params=CHECKPOINT_BACKENDS)
def checkpoint_backend(request: pytest.FixtureRequest) -> str:
    """The name of the checkpoint backend under test."""
    return str(request.param)


@pytest.fixture
async def cstore(checkpoint_backend: str, tmp_path: Path) -> AsyncIterator[BaseCheckpointStore]:
    """A fresh, set-up checkpoint store of each backend."""
    store = make_checkpoint_store(checkpoint_backend, tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, cstore: BaseCheckpointStore) -> Api:
    """The checkpoint store driven through its sync or its async API."""
    return Api(cstore, request.param == "async")


class Clock:
    """A settable clock standing in for ``utcnow`` where operations are built."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Operations are stamped with a clock the test moves by hand."""
    fake = Clock()
    monkeypatch.setattr(memfold.checkpoints, "utcnow", fake)
    return fake


def msg(i: int) -> bytes:
    return f'{{"role":"user","content":"message {i}"}}'.encode()


def messages(n: int) -> SequenceBlob:
    return SequenceBlob("json", tuple(msg(i) for i in range(n)))


def cid(i: int) -> str:
    """Checkpoint ids that sort in creation order, like LangGraph's uuid6 ids."""
    return f"ckpt-{i:04d}"


async def grow(
    api: Api, thread: str, n: int, *, namespace: str = "", start: int = 0, **kwargs: Any
) -> list[str]:
    """Put checkpoints start..n-1 on a thread, each appending one message to ``messages``."""
    ids = []
    for i in range(start, n):
        await api.put(
            thread, cid(i), BODY, namespace=namespace,
            parent_id=None if i == 0 else cid(i - 1),
            metadata={"step": i, "source": "loop"}, versions={"messages": i + 1},
            values={"messages": messages(i + 1)}, **kwargs,
        )  # fmt: skip
        ids.append(cid(i))
    return ids


def write(
    task: str, idx: int, channel: str = "messages", data: bytes = b"1", path: str = ""
) -> PendingWrite:
    return PendingWrite(task, idx, channel, Blob("json", data), path)


# Put and get.


async def test_put_then_get_returns_the_checkpoint(api: Api) -> None:
    """Body, metadata, versions, values and parent come back as put; the newest is the default."""
    await api.put(
        "t", cid(0), BODY, metadata={"source": "input", "step": -1, "user": "ana"},
        versions={"a": 1, "b": "v1", "c": 1.5}, values={"a": Blob("json", b"1"), "b": None,
                                                         "c": messages(2)},
    )  # fmt: skip
    await api.put("t", cid(1), BODY, parent_id=cid(0), versions={"a": 1, "b": "v1", "c": 1.5})
    got = await api.get("t", checkpoint_id=cid(0))
    assert got.body == BODY
    assert got.parent_id is None
    assert got.metadata == {"source": "input", "step": -1, "user": "ana"}
    assert got.versions == {"a": 1, "b": "v1", "c": 1.5}
    assert got.values == {"a": Blob("json", b"1"), "c": messages(2)}
    latest = await api.get("t")
    assert latest.checkpoint_id == cid(1)
    assert latest.parent_id == cid(0)
    assert latest.values == got.values  # unchanged channels read their older rows


async def test_unknown_thread_namespace_or_id_gives_none(api: Api) -> None:
    """get never falls back: an unknown explicit id is None, not the newest checkpoint."""
    await grow(api, "t", 2)
    assert await api.get("nope") is None
    assert await api.get("t", namespace="child:1") is None
    assert await api.get("t", checkpoint_id="ckpt-9999") is None


async def test_a_channel_dropped_from_versions_is_gone(api: Api) -> None:
    """Values follow the checkpoint's versions: a channel it no longer lists is absent."""
    await api.put("t", cid(0), BODY, versions={"a": 1, "b": 1},
                  values={"a": Blob("j", b"a"), "b": Blob("j", b"b")})  # fmt: skip
    await api.put("t", cid(1), BODY, parent_id=cid(0), versions={"a": 2},
                  values={"a": Blob("j", b"a2")})  # fmt: skip
    assert (await api.get("t")).values == {"a": Blob("j", b"a2")}
    assert (await api.get("t", checkpoint_id=cid(0))).values["b"] == Blob("j", b"b")


async def test_putting_a_checkpoint_again_replaces_its_record(api: Api) -> None:
    """Re-putting an id replaces metadata, body and values without duplicating it in listings;
    a sweep then drops the value rows nothing reads any more."""
    await api.put("t", cid(0), BODY, metadata={"n": 1}, versions={"x": 1},
                  values={"x": Blob("j", b"old")})  # fmt: skip
    await api.put("t", cid(0), Blob("json", b"2"), metadata={"n": 2}, versions={"x": 2},
                  values={"x": Blob("j", b"new")})  # fmt: skip
    listed = await api.list_checkpoints("t")
    assert [(c.metadata, c.body.data, c.values) for c in listed] == [
        ({"n": 2}, b"2", {"x": Blob("j", b"new")})
    ]
    assert (await api.sweep(RetentionPolicy())).blobs == 1
    assert (await api.stats("t")).blobs == 1


async def test_namespaces_and_tenants_are_isolated(api: Api) -> None:
    """The same thread id in another namespace or tenant is a different history."""
    await grow(api, "t", 2)
    await grow(api, "t", 1, namespace="child:1")
    await grow(api, "t", 3, tenant="other")
    assert len(await api.list_checkpoints("t", namespace="")) == 2
    assert len(await api.list_checkpoints("t", namespace="child:1")) == 1
    assert len(await api.list_checkpoints("t")) == 3
    assert len(await api.list_checkpoints("t", tenant="other")) == 3
    assert await api.get("t", tenant="third") is None


# Growth that follows new content.


async def test_a_growing_list_costs_its_new_items(api: Api, cstore: BaseCheckpointStore) -> None:
    """200 checkpoints of a list growing by one item store under 2x the items' own bytes, and
    every checkpoint reads back exactly its list."""
    await grow(api, "t", 200)
    stats = await api.stats("t")
    floor = sum(len(msg(i)) for i in range(200))
    assert stats.checkpoints == 200
    assert stats.value_bytes < 2 * floor
    for i in (0, 1, 15, 16, 17, 63, 64, 100, 199):
        got = await api.get("t", checkpoint_id=cid(i))
        assert got.values["messages"] == messages(i + 1)


async def test_lists_that_do_not_grow_by_appending_read_back_exactly(api: Api) -> None:
    """Replacing, removing and re-appending items keeps every checkpoint's list exact."""
    lists = [[b"a"], [b"a", b"b"], [b"a", b"X"], [b"X"], [b"X", b"c", b"d"], [b"X", b"c", b"d"]]
    for i, items in enumerate(lists):
        await api.put(
            "t",
            cid(i),
            BODY,
            parent_id=cid(i - 1) if i else None,
            versions={"m": i + 1},
            values={"m": SequenceBlob("j", tuple(items))},
        )
    for i, items in enumerate(lists):
        assert (await api.get("t", checkpoint_id=cid(i))).values["m"].items == tuple(items)


async def test_a_fork_reusing_version_numbers_keeps_both_branches(api: Api) -> None:
    """Forking from an older checkpoint with the same version numbers (LangGraph's integer
    versions do this) leaves the original branch's values intact."""
    await grow(api, "t", 3)
    fork = SequenceBlob("json", (msg(0), msg(1), b'"forked"'))
    await api.put("t", "ckpt-0002-fork", BODY, parent_id=cid(1), versions={"messages": 3},
                  values={"messages": fork})  # fmt: skip
    await api.put("t", "ckpt-0003-fork", BODY, parent_id="ckpt-0002-fork",
                  versions={"messages": 3})  # fmt: skip
    assert (await api.get("t", checkpoint_id=cid(2))).values["messages"] == messages(3)
    assert (await api.get("t", checkpoint_id="ckpt-0002-fork")).values["messages"] == fork
    assert (await api.get("t", checkpoint_id="ckpt-0003-fork")).values["messages"] == fork


# Pending writes.


async def test_writes_are_insert_if_absent_and_special_writes_replace(api: Api) -> None:
    """A repeated (task, idx >= 0) keeps the first value; a negative idx keeps the last."""
    await grow(api, "t", 1)
    await api.put_writes("t", cid(0), [write("t1", 0, data=b"first"), write("t1", -1, data=b"e1")])
    await api.put_writes("t", cid(0), [write("t1", 0, data=b"again"), write("t1", -1, data=b"e2")])
    got = await api.get("t")
    assert [(w.idx, w.value.data) for w in got.writes] == [(-1, b"e2"), (0, b"first")]


async def test_a_special_write_replaced_by_one_stored_otherwise_reads_back(api: Api) -> None:
    """A long error that a store compresses, replaced by a short one it keeps as given, and
    the other way round: each reads back as last written (the first case read as garbage)."""
    await grow(api, "t", 1)
    long = b"Traceback (most recent call last): " * 40
    for data in (long, b"boom", long):
        await api.put_writes("t", cid(0), [write("t1", -1, data=data)])
        assert [w.value.data for w in (await api.get("t")).writes] == [data]


async def test_writes_come_back_sorted_by_path_task_and_index(api: Api) -> None:
    """Pending writes are ordered by (task_path, task_id, idx), whatever the order of arrival."""
    await grow(api, "t", 1)
    await api.put_writes("t", cid(0), [write("b", 1, path="~1"), write("b", 0, path="~1")])
    await api.put_writes("t", cid(0), [write("a", 0, path="~2"), write("z", 0, path="")])
    got = await api.get("t")
    assert [(w.task_path, w.task_id, w.idx) for w in got.writes] == [
        ("", "z", 0), ("~1", "b", 0), ("~1", "b", 1), ("~2", "a", 0),
    ]  # fmt: skip


async def test_writes_belong_to_one_checkpoint_and_namespace(api: Api) -> None:
    """A new checkpoint starts without writes; writes in a child namespace stay there."""
    await grow(api, "t", 2)
    await api.put_writes("t", cid(0), [write("a", 0)])
    await api.put_writes("t", cid(0), [write("b", 0)], namespace="child:1")
    assert len((await api.get("t", checkpoint_id=cid(0))).writes) == 1
    assert (await api.get("t")).writes == ()


# Delta-channel history.


async def history(api: Api, *args: Any, **kwargs: Any) -> dict[str, ChannelHistory]:
    """`channel_history` run through the store's sync or async API."""
    flow = channel_history(api.store, *args, **kwargs)
    return await arun(flow) if api.use_async else run(flow)


async def delta_chain(api: Api, ids: list[str], seed_every: int, namespace: str = "") -> None:
    """Checkpoints of one delta channel ``d`` in a line: a stored value at every
    ``seed_every``-th, and on each a write to ``d`` (its index as data) and one to ``other``."""
    for i, checkpoint_id in enumerate(ids):
        seeded = i % seed_every == 0
        await api.put(
            "t", checkpoint_id, BODY, namespace=namespace,
            parent_id=ids[i - 1] if i else None, versions={"d": i + 1, "other": i + 1},
            values={"d": Blob("json", f'"seed {i}"'.encode())} if seeded else None,
        )  # fmt: skip
        writes = [write("task", 0, "d", str(i).encode()), write("task", 1, "other")]
        await api.put_writes("t", checkpoint_id, writes, namespace=namespace)


async def test_channel_history_walks_the_parents_back_to_the_seed(api: Api) -> None:
    """The writes before a checkpoint come oldest first, from its parent back to the nearest
    ancestor storing the channel's value (whose own writes count), with that value as seed;
    the checkpoint's own writes and other channels' writes are left out."""
    ids = [cid(i) for i in range(7)]
    await delta_chain(api, ids, seed_every=3)
    found = await history(api, "t", ["d"], checkpoint_id=cid(5))
    assert [w.value.data for w in found["d"].writes] == [b"3", b"4"]
    assert found["d"].seed == Blob("json", b'"seed 3"')
    newest = await history(api, "t", ["d", "missing", "d"])
    assert list(newest) == ["d", "missing"]
    assert [w.value.data for w in newest["d"].writes] == [b"3", b"4", b"5"]
    assert newest["d"].seed == Blob("json", b'"seed 3"')
    assert newest["missing"] == ChannelHistory()
    assert await history(api, "t", []) == {}
    assert await history(api, "t", ["d"], checkpoint_id="nope") == {"d": ChannelHistory()}
    assert await history(api, "t", ["d"], namespace="child:1") == {"d": ChannelHistory()}


async def test_channel_history_of_a_fork_holds_only_its_own_branch(api: Api) -> None:
    """A fork from an older checkpoint sees its own ancestors, not the newer checkpoints of
    the branch it left, though they are listed between them."""
    ids = [cid(i) for i in range(5)]
    await delta_chain(api, ids, seed_every=100)
    await api.put("t", "ckpt-0009-fork", BODY, parent_id=cid(2), versions={"d": 9})
    await api.put_writes("t", "ckpt-0009-fork", [write("task", 0, "d", b"fork")])
    await api.put("t", "ckpt-0010-fork", BODY, parent_id="ckpt-0009-fork", versions={"d": 10})
    found = await history(api, "t", ["d"], checkpoint_id="ckpt-0010-fork")
    assert [w.value.data for w in found["d"].writes] == [b"0", b"1", b"2", b"fork"]
    assert found["d"].seed == Blob("json", b'"seed 0"')


async def test_channel_history_stops_at_parents_that_loop(api: Api) -> None:
    """Parents that lead back to a checkpoint already walked raise NotFound, not a walk that
    never ends."""
    await api.put("t", "a", BODY, parent_id="b", versions={"d": 1})
    await api.put("t", "b", BODY, parent_id="a", versions={"d": 2})
    with pytest.raises(NotFound, match="own ancestor"):
        await history(api, "t", ["d"], checkpoint_id="b")


async def test_channel_history_reads_long_walks_and_unordered_ids(api: Api) -> None:
    """A walk longer than several pages, and one whose ids do not grow with each checkpoint
    (the parent listed after its child), give every write in order."""
    for namespace, ids in (("", [cid(i) for i in range(90)]), ("x", [f"c{i}" for i in range(30)])):
        await delta_chain(api, ids, seed_every=1000, namespace=namespace)
        found = await history(api, "t", ["d"], namespace=namespace, checkpoint_id=ids[-1])
        assert [w.value.data for w in found["d"].writes] == [
            str(i).encode() for i in range(len(ids) - 1)
        ]
        assert found["d"].seed == Blob("json", b'"seed 0"')
    # The newest checkpoint (the default) comes with its first page of ancestors.
    assert await history(api, "t", ["d"]) == await history(api, "t", ["d"], checkpoint_id=cid(89))


class _Paged:
    """A store as the paged walk of `channel_history` reads it: its gets and listings only."""

    def __init__(self, store: BaseCheckpointStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        if name not in ("get", "aget", "list_checkpoints", "alist_checkpoints"):
            raise AttributeError(name)
        return getattr(self.store, name)


async def test_stores_read_a_channel_history_in_one_operation(
    api: Api, checkpoint_backend: str
) -> None:
    """Every store answers `read_channel_history` itself (what `channel_history` returns), and
    leaves to the paged walk (None) parents that loop; SQL stores also a value they would have
    to look for past a checkpoint that names none (stored without its channels' values), which
    the others find (the tiered store from its hot copy, once a read has warmed it)."""
    ids = [cid(i) for i in range(200)]
    for i, checkpoint_id in enumerate(ids):  # as LangGraph stores them: no value is None
        seeded = i % 150 == 0
        await api.put(
            "t", checkpoint_id, BODY, parent_id=ids[i - 1] if i else None,
            versions={"d": i + 1, "other": i + 1},
            values={"d": Blob("json", f'"seed {i}"'.encode()) if seeded else None, "other": None},
        )  # fmt: skip
        writes = [write("task", 0, "d", str(i).encode()), write("task", 1, "other")]
        await api.put_writes("t", checkpoint_id, writes)
    store = api.store

    async def read(*args: Any, **kwargs: Any) -> Any:
        if api.use_async:
            return await store.aread_channel_history(*args, **kwargs)
        return store.read_channel_history(*args, **kwargs)

    for at in (None, cid(199), cid(150), cid(149), cid(5), "missing"):
        found = await read("t", ["d", "other"], checkpoint_id=at)
        paged = channel_history(_Paged(store), "t", ["d", "other"], checkpoint_id=at)
        assert found == (await arun(paged) if api.use_async else run(paged))
    assert [w.value.data for w in (await history(api, "t", ["d"]))["d"].writes] == [
        str(i).encode() for i in range(150, 199)
    ]
    await api.put("t", "a", BODY, parent_id="b", versions={"d": 1}, values={"d": None})
    await api.put("t", "b", BODY, parent_id="a", versions={"d": 2}, values={"d": None})
    assert await read("t", ["d"], checkpoint_id="b") is None
    await api.put("u", "c1", BODY, versions={"d": 1}, values={"d": Blob("json", b'"seed"')})
    await api.put("u", "c2", BODY, parent_id="c1", versions={"d": 2})  # names no value
    await api.put("u", "c3", BODY, parent_id="c2", versions={"d": 3}, values={"d": None})
    walked = await history(api, "u", ["d"])
    assert walked["d"].seed == Blob("json", b'"seed"')
    finds = checkpoint_backend in ("memory", "redis", "tiered")
    assert await read("u", ["d"]) == (walked if finds else None)
    with pytest.raises(InvalidInput):
        await read("t", "d")


# Listing.


async def test_list_is_newest_first_with_before_limit_and_filter(api: Api) -> None:
    """list orders by id descending; before is strict, limit counts after the filter, and the
    filter is JSON equality on top-level metadata (true is not 1)."""
    await grow(api, "t", 6)
    await api.put("t", cid(6), BODY, parent_id=cid(5), metadata={"step": True, "run_id": "r"})
    ids = [c.checkpoint_id for c in await api.list_checkpoints("t")]
    assert ids == [cid(i) for i in range(6, -1, -1)]
    before = await api.list_checkpoints("t", before=cid(3))
    assert [c.checkpoint_id for c in before] == [cid(2), cid(1), cid(0)]
    assert [c.checkpoint_id for c in await api.list_checkpoints("t", before=cid(3), limit=1)] == [
        cid(2)
    ]
    assert [c.checkpoint_id for c in await api.list_checkpoints("t", filter={"step": 1})] == [
        cid(1)
    ]
    assert [c.checkpoint_id for c in await api.list_checkpoints("t", filter={"step": True})] == [
        cid(6)
    ]
    assert await api.list_checkpoints("t", filter={"step": 1, "source": "input"}) == []
    assert await api.list_checkpoints("t", filter={"missing": None}) == []
    assert len(await api.list_checkpoints("t", filter={"source": "loop"}, limit=2)) == 2
    assert await api.list_checkpoints("t", limit=0) == []
    only = await api.list_checkpoints("t", checkpoint_id=cid(4))
    assert [c.checkpoint_id for c in only] == [cid(4)]


async def test_a_list_filter_int_wider_than_64_bits_is_refused(api: Api) -> None:
    """A filter int beyond 64 bits is `InvalidInput` on every backend (SQLite raised
    OverflowError; found by differential testing against InMemorySaver); the widest ints
    that fit still match."""
    await api.put("t", cid(0), BODY, metadata={"x": 2**63 - 1, "y": -(2**63)})
    for wide in (2**63, -(2**63) - 1, 2**70):
        with pytest.raises(InvalidInput, match="must be an int of 64 bits"):
            await api.list_checkpoints("t", filter={"x": wide})
    assert len(await api.list_checkpoints("t", filter={"x": 2**63 - 1})) == 1
    assert len(await api.list_checkpoints("t", filter={"y": -(2**63)})) == 1


async def test_list_without_a_thread_spans_the_tenant(api: Api) -> None:
    """With no thread id, list covers every thread of the tenant and no other tenant."""
    await grow(api, "a", 1)
    await grow(api, "b", 2)
    await grow(api, "c", 1, tenant="other")
    listed = await api.list_checkpoints()
    assert sorted((c.thread_id, c.checkpoint_id) for c in listed) == [
        ("a", cid(0)), ("b", cid(0)), ("b", cid(1)),
    ]  # fmt: skip


# Deleting, copying, pruning.


async def test_delete_thread_removes_every_namespace(api: Api) -> None:
    """delete_thread removes checkpoints, writes and values of all namespaces, and only them."""
    await grow(api, "t", 3)
    await grow(api, "t", 2, namespace="child:1")
    await api.put_writes("t", cid(0), [write("a", 0)])
    await grow(api, "keep", 1)
    assert await api.delete_thread("t") == 5
    assert await api.list_checkpoints("t") == []
    assert (await api.stats("t")).total_bytes == 0
    assert await api.get("keep") is not None
    assert await api.delete_thread("t") == 0


async def test_delete_for_runs_keeps_values_later_checkpoints_need(api: Api) -> None:
    """Deleting the run that wrote a list's snapshot keeps the rows the next run's deltas
    build on, and removes the deleted checkpoints' writes."""
    for i in range(6):
        await api.put(
            "t",
            cid(i),
            BODY,
            parent_id=cid(i - 1) if i else None,
            metadata={"run_id": "r1" if i < 3 else "r2"},
            versions={"messages": i + 1},
            values={"messages": messages(i + 1)},
        )
        await api.put_writes("t", cid(i), [write("task", 0)])
    await grow(api, "t", 1, namespace="child:1")
    await api.put("t", "x", BODY, namespace="child:1", metadata={"run_id": "r1"})
    assert await api.delete_for_runs(["r1", "unknown"]) == 4
    remaining = await api.list_checkpoints("t")
    assert {c.checkpoint_id for c in remaining} == {cid(3), cid(4), cid(5), cid(0)}
    for i in (3, 4, 5):
        got = await api.get("t", checkpoint_id=cid(i))
        assert got.values["messages"] == messages(i + 1)
        assert len(got.writes) == 1
    assert (await api.stats("t")).writes == 3
    assert await api.delete_for_runs([]) == 0


async def test_copy_thread_keeps_ids_values_writes_and_order(api: Api) -> None:
    """copy_thread copies every checkpoint of every namespace with the same ids, and the
    source is unchanged."""
    await grow(api, "src", 20)
    await grow(api, "src", 2, namespace="child:1")
    await api.put_writes("src", cid(19), [write("a", 0), write("a", -3, "__interrupt__")])
    assert await api.copy_thread("src", "dst") == 22
    for namespace in ("", "child:1"):
        src = await api.list_checkpoints("src", namespace=namespace)
        dst = await api.list_checkpoints("dst", namespace=namespace)
        assert [(c.checkpoint_id, c.parent_id, c.metadata, c.values, c.writes) for c in dst] == [
            (c.checkpoint_id, c.parent_id, c.metadata, c.values, c.writes) for c in src
        ]
    assert len(await api.list_checkpoints("src")) == 22
    assert await api.copy_thread("missing", "dst2") == 0
    assert await api.list_checkpoints("dst2") == []


async def test_copy_thread_refuses_a_target_with_checkpoints(api: Api) -> None:
    """Copying onto a thread that already has checkpoints is a Conflict, and changes nothing."""
    await grow(api, "src", 2)
    await grow(api, "dst", 1)
    with pytest.raises(Conflict):
        await api.copy_thread("src", "dst")
    assert len(await api.list_checkpoints("dst")) == 1


async def test_prune_keep_latest_per_namespace_leaves_no_orphans(api: Api) -> None:
    """keep_latest keeps each namespace's newest checkpoint with its writes and full values,
    and drops every row nothing reads any more."""
    await grow(api, "t", 40)
    await grow(api, "t", 3, namespace="child:1")
    await api.put_writes("t", cid(39), [write("a", 0)])
    await api.put_writes("t", cid(10), [write("a", 0)])
    await grow(api, "other", 3)
    assert await api.prune(["t", "missing"]) == 39 + 2
    kept = await api.list_checkpoints("t")
    assert sorted(c.checkpoint_id for c in kept) == [cid(2), cid(39)]
    latest = await api.get("t")
    assert latest.values["messages"] == messages(40)
    assert len(latest.writes) == 1
    stats = await api.stats("t")
    assert stats.writes == 1
    # The kept chain is the only thing left: no more rows than its snapshot and deltas.
    assert stats.value_bytes <= 2 * messages(40).size + messages(3).size
    assert len(await api.list_checkpoints("other")) == 3
    assert await api.prune([]) == 0


async def counted_chain(api: Api, ids: list[str], seed_every: int, start: int = 0) -> None:
    """Checkpoints ``ids[start:]`` of one delta channel ``d`` in a line, as LangGraph stores a
    delta graph's: a value at every ``seed_every``-th, metadata counting the supersteps since
    (``counters_since_delta_snapshot``), and one write to ``d`` (its index) on each."""
    for i in range(start, len(ids)):
        since = i % seed_every
        await api.put(
            "t", ids[i], BODY, parent_id=ids[i - 1] if i else None, versions={"d": i + 1},
            values=None if since else {"d": Blob("json", f'"seed {i}"'.encode())},
            metadata={"counters_since_delta_snapshot": {"d": [since, since]}} if since else {},
        )  # fmt: skip
        await api.put_writes("t", ids[i], [write("task", 0, "d", str(i).encode())])


async def test_prune_keep_latest_keeps_the_history_delta_channels_are_rebuilt_from(
    api: Api,
) -> None:
    """keep_latest also keeps the ancestors the newest checkpoint's metadata counts (see the
    sweep's test below), so its channel history reads the same."""
    ids = [cid(i) for i in range(6)]
    await counted_chain(api, ids, seed_every=3)
    before = await history(api, "t", ["d"])
    assert await api.prune(["t"]) == 3
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == [cid(5), cid(4), cid(3)]
    assert await history(api, "t", ["d"]) == before


async def test_prune_delete_removes_the_threads(api: Api) -> None:
    """The delete strategy removes the listed threads entirely."""
    await grow(api, "t", 3)
    await grow(api, "u", 1)
    assert await api.prune(["t"], strategy="delete") == 3
    assert await api.list_checkpoints("t") == []
    assert await api.get("u") is not None


# Retention.


async def test_sweep_keeps_the_last_n_per_namespace(api: Api) -> None:
    """keep_last=N keeps the newest N checkpoints of each namespace, all still readable."""
    await grow(api, "t", 30)
    await grow(api, "t", 2, namespace="child:1")
    result = await api.sweep(RetentionPolicy(keep_last=5))
    assert result.checkpoints == 25
    assert result.threads == 0
    kept = await api.list_checkpoints("t", namespace="")
    assert [c.checkpoint_id for c in kept] == [cid(i) for i in range(29, 24, -1)]
    assert all(c.values["messages"] == messages(int(c.checkpoint_id[-4:]) + 1) for c in kept)
    assert len(await api.list_checkpoints("t", namespace="child:1")) == 2
    assert (await api.sweep(RetentionPolicy(keep_last=5))).checkpoints == 0


async def test_sweep_keeps_the_history_delta_channels_are_rebuilt_from(
    api: Api, clock: Clock
) -> None:
    """A kept checkpoint whose metadata counts the supersteps since its delta channels stored a
    value (LangGraph's ``counters_since_delta_snapshot``) keeps that many ancestors along its
    parents, so its channel history reads the same after a sweep; one that gives no count
    (``delta_writes_versioned``) keeps all of them."""
    ids = [cid(i) for i in range(10)]
    await grow(api, "js", 4)
    await counted_chain(api, ids[:5], seed_every=5)
    clock.advance(100)  # 0-4 are old
    await counted_chain(api, ids, seed_every=5, start=5)
    fork = cid(20)  # from checkpoint 2: it needs 2, 1 and 0, not 9 back to 5
    await api.put(
        "t", fork, BODY, parent_id=cid(2), versions={"d": 30},
        metadata={"counters_since_delta_snapshot": {"d": [3, 3], "e": [1, 1]}},
    )  # fmt: skip
    await api.put("js", cid(4), BODY, parent_id=cid(3), metadata={"delta_writes_versioned": True})
    before = {c: await history(api, "t", ["d"], checkpoint_id=c) for c in (cid(9), fork)}
    assert (await api.sweep(RetentionPolicy(max_age_seconds=50))).checkpoints == 2
    assert (await api.sweep(RetentionPolicy(keep_last=2))).checkpoints == 0
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == [
        fork, *(cid(i) for i in (9, 8, 7, 6, 5, 2, 1, 0))
    ]  # fmt: skip
    assert {c: await history(api, "t", ["d"], checkpoint_id=c) for c in before} == before
    assert len(await api.list_checkpoints("js")) == 5
    await api.put("t", cid(21), BODY, parent_id=fork, versions={"d": 31})  # a snapshot
    assert (await api.sweep(RetentionPolicy(keep_last=1))).checkpoints == 9


async def test_sweep_drops_checkpoints_older_than_max_age_but_keeps_the_newest(
    api: Api, clock: Clock
) -> None:
    """max_age removes old checkpoints, never a namespace's newest one."""
    await grow(api, "t", 3)
    await grow(api, "idle", 2)
    clock.advance(100)
    await grow(api, "t", 5, start=3)
    clock.advance(50)
    result = await api.sweep(RetentionPolicy(max_age_seconds=120))
    assert result.checkpoints == 3 + 1
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == [cid(4), cid(3)]
    assert [c.checkpoint_id for c in await api.list_checkpoints("idle")] == [cid(1)]
    assert (await api.get("t")).values["messages"] == messages(5)


async def test_sweep_expires_threads_by_their_own_or_the_default_ttl(
    api: Api, clock: Clock
) -> None:
    """A thread not written for its TTL is deleted whole; its own TTL beats the default."""
    for thread in ("short", "default", "long", "fresh"):
        await grow(api, thread, 2)
        await api.put_writes(thread, cid(1), [write("a", 0)])
    assert await api.set_thread_ttl("short", 10)
    assert await api.set_thread_ttl("long", 10_000)
    assert not await api.set_thread_ttl("missing", 10)
    clock.advance(120)
    await grow(api, "fresh", 3, start=2)
    result = await api.sweep(RetentionPolicy(ttl_seconds=60))
    assert result.threads == 2
    assert result.checkpoints == 4
    assert result.writes == 2
    assert result.blobs > 0
    for gone in ("short", "default"):
        assert await api.get(gone) is None
        assert (await api.stats(gone)).total_bytes == 0
    for kept in ("long", "fresh"):
        assert await api.get(kept) is not None


async def test_a_ttl_counts_from_the_last_put(api: Api, clock: Clock) -> None:
    """A put 20 s after the previous one keeps its thread for a whole TTL from then, with its
    own TTL and with the default one."""
    for thread in ("own", "default"):
        await grow(api, thread, 2)
    assert await api.set_thread_ttl("own", 60)
    clock.advance(20)
    for thread in ("own", "default"):
        await grow(api, thread, 3, start=2)
    clock.advance(50)
    policy = RetentionPolicy(ttl_seconds=60)
    assert (await api.sweep(policy)).threads == 0
    assert (await api.get("own")).checkpoint_id == cid(2)  # type: ignore[union-attr]
    clock.advance(15)
    assert (await api.sweep(policy)).threads == 2
    assert await api.get("own") is None
    assert await api.get("default") is None


async def test_a_threads_own_ttl_reads_back(api: Api) -> None:
    """get_thread_ttl reads what set_thread_ttl set, per tenant; None when the thread has none,
    it was cleared, or there is no such thread (also one holding only journal entries); a bad
    thread id or tenant is refused."""
    from memfold.journal import EffectJournal

    await grow(api, "t", 2)
    await grow(api, "t", 1, tenant="other")
    EffectJournal(api.store).record("journal-only", "call-1", {"paid": 1})
    for thread in ("t", "missing", "journal-only"):
        assert await api.get_thread_ttl(thread) is None
    assert not await api.set_thread_ttl("journal-only", 60)
    assert await api.set_thread_ttl("t", 90.5)
    assert await api.get_thread_ttl("t") == 90.5
    assert await api.get_thread_ttl("t", tenant="other") is None
    assert await api.get_thread_ttl("journal-only") is None
    assert await api.set_thread_ttl("t", None)
    assert await api.get_thread_ttl("t") is None
    for bad in ({"thread_id": ""}, {"thread_id": "t", "tenant": ""}, {"thread_id": 5}):
        with pytest.raises(InvalidInput):
            await api.get_thread_ttl(**bad)


async def test_a_thread_read_then_expired_by_its_own_ttl_is_gone(api: Api, clock: Clock) -> None:
    """A thread read (a tiered store then copies it into Redis) before its own TTL runs out is
    gone after the sweep: nothing reads it back, and a new put starts it afresh."""
    await grow(api, "t", 2)
    assert await api.set_thread_ttl("t", 10)
    assert await api.get("t") is not None
    clock.advance(120)
    assert (await api.sweep(RetentionPolicy())).threads == 1
    assert await api.get("t") is None
    assert await api.list_checkpoints("t") == []
    await api.put("t", cid(5), BODY)
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == [cid(5)]


async def test_keep_last_trims_a_thread_its_own_ttl_keeps_past_the_policys(
    api: Api, clock: Clock
) -> None:
    """A thread idle past the policy's TTL but within its own longer one stays, and keep_last
    still trims it in the same sweep; a dry run counts the same."""
    await grow(api, "t", 3)
    assert await api.set_thread_ttl("t", 10_000)
    clock.advance(120)
    policy = RetentionPolicy(keep_last=1, ttl_seconds=60)
    planned = await api.sweep(policy, dry_run=True)
    assert (planned.threads, planned.checkpoints) == (0, 2)
    assert await api.sweep(policy) == planned
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == [cid(2)]


async def test_a_dry_run_sweep_counts_what_a_sweep_removes_and_changes_nothing(
    api: Api, clock: Clock
) -> None:
    """A dry run counts the threads, checkpoints, values and pending writes the same sweep
    removes (TTL, keep_last and max_age together) and changes nothing; a sweep naming a tenant
    leaves the other tenants alone."""
    tenants = ("acme", "globex")
    for tenant in tenants:
        await grow(api, "idle", 3, tenant=tenant)
        await api.put_writes("idle", cid(2), [write("a", 0)], tenant=tenant)
    clock.advance(100)
    for tenant in tenants:
        await grow(api, "busy", 6, tenant=tenant)
        await api.put_writes("busy", cid(1), [write("a", 0), write("a", 1)], tenant=tenant)
    clock.advance(50)
    policy = RetentionPolicy(keep_last=3, max_age_seconds=1000, ttl_seconds=120)
    planned = await api.sweep(policy, tenant="acme", dry_run=True)
    assert (planned.threads, planned.checkpoints, planned.writes) == (1, 3 + 3, 1 + 2)
    assert planned.blobs > 0
    before = [c.checkpoint_id for c in await api.list_checkpoints("busy", tenant="acme")]
    assert len(before) == 6
    assert await api.get("idle", tenant="acme") is not None
    assert await api.sweep(policy, tenant="acme") == planned
    assert await api.get("idle", tenant="acme") is None
    kept = await api.list_checkpoints("busy", tenant="acme")
    assert [c.checkpoint_id for c in kept] == [cid(5), cid(4), cid(3)]
    assert (await api.get("busy", tenant="acme")).values["messages"] == messages(6)
    assert len(await api.list_checkpoints("busy", tenant="globex")) == 6
    assert await api.get("idle", tenant="globex") is not None
    assert await api.sweep(policy, dry_run=True) == planned  # globex now matches acme before


async def test_sweep_uses_the_stores_own_policy_by_default(
    checkpoint_backend: str, tmp_path: Path
) -> None:
    """A store opened with a retention policy applies it when sweep gets none."""
    store = make_checkpoint_store(
        checkpoint_backend, tmp_path, retention=RetentionPolicy(keep_last=2)
    )
    try:
        api = Api(store, False)
        await grow(api, "t", 5)
        assert store.sweep().checkpoints == 3
    finally:
        store.close()
        drop_checkpoint_store(store)


# One writer per thread.


A = Lease("writer-a", 30)
B = Lease("writer-b", 30)


async def test_a_second_writer_from_a_stale_checkpoint_conflicts(api: Api) -> None:
    """While A's lease is live, B may neither fork from an older checkpoint nor add writes."""
    await grow(api, "t", 3, lease=A)
    with pytest.raises(Conflict):
        await api.put("t", "b-fork", BODY, parent_id=cid(0), lease=B)
    with pytest.raises(Conflict):
        await api.put("t", "b-root", BODY, lease=B)
    with pytest.raises(Conflict):
        await api.put_writes("t", cid(1), [write("x", 0)], lease=B)
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == [cid(2), cid(1), cid(0)]


async def test_the_lease_holder_may_time_travel_and_fork(api: Api) -> None:
    """A's own checkpoints from an older parent (a fork) are accepted."""
    await grow(api, "t", 3, lease=A)
    await api.put(
        "t",
        "a-fork",
        BODY,
        parent_id=cid(0),
        versions={"messages": 2},
        values={"messages": SequenceBlob("json", (msg(0), b'"other"'))},
        lease=A,
    )
    assert (await api.get("t", checkpoint_id="a-fork")).parent_id == cid(0)
    assert (await api.get("t", checkpoint_id=cid(1))).values["messages"] == messages(2)


async def test_continuing_from_the_newest_checkpoint_hands_the_lease_over(api: Api) -> None:
    """B continuing from the newest checkpoint takes the lease; A's next write conflicts, so
    the thread never forks between two live writers."""
    await grow(api, "t", 2, lease=A)
    await api.put("t", cid(2), BODY, parent_id=cid(1), lease=B)
    with pytest.raises(Conflict):
        await api.put("t", "a-late", BODY, parent_id=cid(1), lease=A)
    with pytest.raises(Conflict):
        await api.put_writes("t", cid(1), [write("late", 0)], lease=A)
    await api.put("t", cid(3), BODY, parent_id=cid(2), lease=B)


async def test_writes_on_the_newest_checkpoint_hand_the_lease_over(api: Api) -> None:
    """B resuming the newest checkpoint (pending writes on it, as a resumed interrupt does)
    takes the lease; A may then no longer fork."""
    await grow(api, "t", 2, lease=A)
    await api.put_writes("t", cid(1), [write("resume", -4, "__resume__")], lease=B)
    with pytest.raises(Conflict):
        await api.put("t", "a-fork", BODY, parent_id=cid(0), lease=A)
    await api.put("t", cid(2), BODY, parent_id=cid(1), lease=B)


async def test_writes_on_a_checkpoint_not_stored_yet_leave_the_lease_alone(api: Api) -> None:
    """LangGraph stores a step's writes and its checkpoint concurrently: B's writes on a
    checkpoint not stored yet are kept without a lease check, and do not take the lease (A may
    still fork); B's put of that checkpoint from the newest one then hands the lease over."""
    await grow(api, "t", 2, lease=A)
    await api.put_writes("t", cid(2), [write("task-1", 0)], lease=B)
    await api.put("t", "a-fork", BODY, parent_id=cid(0), lease=A)  # A still holds the lease
    with pytest.raises(Conflict):  # B's put from a stale checkpoint is refused
        await api.put("t", cid(2), BODY, parent_id=cid(0), lease=B)
    await api.put("t", cid(2), BODY, parent_id=cid(1), lease=B)  # continuing the newest: B's
    got = await api.get("t", checkpoint_id=cid(2))
    assert [w.channel for w in got.writes] == ["messages"]
    with pytest.raises(Conflict):
        await api.put("t", "a-fork-2", BODY, parent_id=cid(0), lease=A)


async def test_a_nested_runs_first_checkpoint_is_judged_by_its_origin(api: Api) -> None:
    """A subgraph's first checkpoint (a new namespace, no parent) continues from the enclosing
    checkpoint its lease names as origin: B's from the newest one takes the lease over, B's
    from an older one, from one not stored yet, or without origin is refused (a stale writer
    whose first subgraph checkpoint passed unchecked took the lease over with the next one)."""

    def b_from(origin: str) -> Lease:
        return replace(B, origin=("", origin))

    await grow(api, "t", 2, lease=A)
    with pytest.raises(Conflict):
        await api.put("t", "sub-old", BODY, namespace="sub:1", lease=b_from(cid(0)))
    with pytest.raises(Conflict):
        await api.put("t", "sub-none", BODY, namespace="sub:1", lease=B)
    with pytest.raises(Conflict):
        await api.put("t", "sub-early", BODY, namespace="sub:2", lease=b_from(cid(9)))
    await api.put("t", cid(2), BODY, parent_id=cid(0), lease=A)  # A still holds the lease
    await api.put("t", "sub-new", BODY, namespace="sub:3", lease=b_from(cid(2)))
    with pytest.raises(Conflict):  # B took the lease over: A may no longer fork
        await api.put("t", "a-fork", BODY, parent_id=cid(1), lease=A)
    await api.put("t", "sub-next", BODY, namespace="sub:3", parent_id="sub-new", lease=B)
    await api.put("t", cid(3), BODY, parent_id=cid(2), lease=B)
    stored = {"": [cid(3), cid(2), cid(1), cid(0)], "sub:1": [], "sub:2": []}
    stored["sub:3"] = ["sub-next", "sub-new"]
    for namespace, ids in stored.items():
        got = await api.list_checkpoints("t", namespace=namespace)
        assert [c.checkpoint_id for c in got] == ids


async def test_without_handover_the_second_writer_always_waits(api: Api) -> None:
    """A lease with handover=False refuses B even when B continues from the newest checkpoint."""
    await grow(api, "t", 2, lease=A)
    with pytest.raises(Conflict):
        await api.put("t", cid(2), BODY, parent_id=cid(1), lease=Lease("writer-b", 30, False))


async def test_an_expired_or_released_lease_frees_the_thread(api: Api, clock: Clock) -> None:
    """After the lease runs out, or its holder releases it, another writer may fork."""
    await grow(api, "t", 2, lease=A)
    clock.advance(31)
    await api.put("t", "b-fork", BODY, parent_id=cid(0), lease=B)
    assert not await api.release("t", "writer-a")
    assert await api.release("t", "writer-b")
    await api.put("t", "a-fork", BODY, parent_id=cid(0), lease=A)


async def test_writes_without_a_lease_are_not_checked(api: Api) -> None:
    """Leases are opt-in per call: a put without one is never refused."""
    await grow(api, "t", 2, lease=A)
    await api.put("t", "free", BODY, parent_id=cid(0))


# Bad input.


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("", "c", BODY), {}),
        (("t", "", BODY), {}),
        (("t", "c", b"not a blob"), {}),
        (("t", "c", BODY), {"values": {"x": Blob("j", b"1")}}),
        (("t", "c", BODY), {"versions": {"x": True}}),
        (("t", "c", BODY), {"metadata": {"x": object()}}),
        (("t", "c", BODY), {"metadata": {"x": float("nan")}}),
        (("t", "c", BODY), {"versions": {"x": 1}, "values": {"x": SequenceBlob("j", ())}}),
        (("t", "c", BODY), {"versions": {"x": 1}, "values": {"x": "text"}}),
        (("t", "c", BODY), {"namespace": "a\x00b"}),
        (("t", "c", BODY), {"lease": Lease("w", 0)}),
        (("t", "c", BODY), {"namespace": "s", "lease": Lease("w", 1, origin=("a\x00", "c"))}),
        (("t", "c", BODY), {"namespace": "s", "lease": Lease("w", 1, origin=("", ""))}),
    ],
)
async def test_bad_puts_are_refused(
    api: Api, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Malformed puts raise InvalidInput and store nothing."""
    with pytest.raises(InvalidInput):
        await api.put(*args, **kwargs)
    assert await api.list_checkpoints() == []


async def test_bad_arguments_elsewhere_are_refused(api: Api) -> None:
    """Writes, listing, pruning and retention validate their arguments too."""
    with pytest.raises(InvalidInput):
        await api.put_writes("t", "c", [("messages", 1)])
    with pytest.raises(InvalidInput):
        await api.list_checkpoints("t", limit=-1)
    with pytest.raises(InvalidInput):
        await api.prune(["t"], strategy="all")
    with pytest.raises(InvalidInput):
        await api.prune("t")
    with pytest.raises(InvalidInput):
        await api.sweep(RetentionPolicy(keep_last=0))
    with pytest.raises(InvalidInput):
        await api.set_thread_ttl("t", -5)


def test_urls_and_options(tmp_path: Path) -> None:
    """memory:// takes delta and retention options as query parameters; unknown ones fail."""
    store = open_checkpoint_store("memory://?snapshot_every=4&min_growth=0&keep_last=3")
    assert store.delta_policy == DeltaPolicy(4, 0.0)
    assert store.retention == RetentionPolicy(keep_last=3)
    for bad in ("memory://?nope=1", "memory://?keep_last=x", "redis+nope://", 42):
        with pytest.raises(InvalidInput):
            open_checkpoint_store(bad)


async def test_early_writes_are_the_writes_of_checkpoints_not_stored(
    api: Api, checkpoint_backend: str
) -> None:
    """``ListEarlyWrites`` lists, per namespace and checkpoint, the pending writes whose
    checkpoint is not stored yet (what a tiered store's warm-up must copy besides the
    checkpoints); a checkpoint put since takes its writes out. Redis does not list them."""
    from memfold.checkpoint_ops import ListEarlyWrites

    early = ListEarlyWrites("default", "t")
    if checkpoint_backend == "redis":
        with pytest.raises(InvalidInput):
            await api.execute(early)
        return
    first, second = (PendingWrite("task", i, "log", Blob("json", b"%d" % i)) for i in (1, 0))
    await api.put("t", cid(0), BODY)
    await api.put_writes("t", cid(0), [PendingWrite("task", 0, "log", Blob("json", b"0"))])
    await api.put_writes("t", cid(1), [first, second])
    await api.put_writes("t", cid(2), [second], namespace="sub")
    assert await api.execute(early) == [
        ("", cid(1), (second, first)),
        ("sub", cid(2), (second,)),
    ]
    await api.put("t", cid(1), BODY, parent_id=cid(0))
    assert await api.execute(early) == [("sub", cid(2), (second,))]
    assert await api.execute(ListEarlyWrites("default", "nothing")) == []
