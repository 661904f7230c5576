"""SQL checkpoint stores remember their own last put per thread namespace (see
`memfold.backends.sql.checkpoint_heads`): the next put from it reads nothing back, and whatever
another writer or a removal did in between makes it read again instead of trusting memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memfold import Conflict
from memfold.backends.sql.checkpoint_heads import Head, Heads
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    Lease,
    PendingWrite,
    SequenceBlob,
    open_checkpoint_store,
)
from tests.backends.test_checkpoints import Clock, cid, messages, msg
from tests.backends.test_checkpoints import clock as clock  # the fixture
from tests.support import PG_URL, Api, drop_checkpoint_store, postgres_checkpoint_store

BODY = Blob("json", b"{}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[BaseCheckpointStore, BaseCheckpointStore]]:
    """Two stores on one database: this process's, and one standing in for another process."""
    if request.param == "sqlite":
        url, options = f"sqlite:///{tmp_path / 'checkpoints.db'}", {}
        mine = open_checkpoint_store(url)
    else:
        mine = postgres_checkpoint_store()
        url, options = PG_URL, {"schema": mine.tables.schema}  # type: ignore[attr-defined]
    other = open_checkpoint_store(url, setup=False, **options)
    yield mine, other
    await other.aclose()
    await mine.aclose()
    drop_checkpoint_store(mine)


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    """Whether the stores are driven through their async API."""
    return request.param == "async"


def statements(store: BaseCheckpointStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of every statement ``store`` runs from now on (filled in as it runs)."""
    seen: list[str] = []
    bound = store._runner.statements  # type: ignore[attr-defined]
    bind = bound.bind

    def counted(statement: Any, params: Any) -> Any:
        found = bind(statement, params)
        seen.append(found[0])
        return found

    monkeypatch.setattr(bound, "bind", counted)
    return seen


async def put(api: Api, i: int, parent: int | None, **kwargs: Any) -> None:
    """Put checkpoint ``i`` holding ``i + 1`` messages, from checkpoint ``parent``."""
    kwargs.setdefault("versions", {"messages": i + 1, "step": i + 1})
    kwargs.setdefault("values", {"messages": messages(i + 1), "step": Blob("json", b"%d" % i)})
    await api.put("t", cid(i), BODY, parent_id=None if parent is None else cid(parent), **kwargs)


async def test_a_put_from_the_stores_own_last_checkpoint_reads_nothing(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore],
    use_async: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a store has put a thread's checkpoint, its put of the child is writes only (one
    statement on PostgreSQL), and the child reads back whole."""
    mine, _ = stores
    api = Api(mine, use_async)
    await put(api, 0, None, lease=Lease("me", 30))
    seen = statements(mine, monkeypatch)
    for i in range(1, 4):
        await put(api, i, i - 1, lease=Lease("me", 30))
    assert not [s for s in seen if s.lstrip().upper().startswith("SELECT")], seen
    if mine.name == "postgresql":
        assert len(seen) == 3
    found = await api.get("t")
    assert found.values["messages"] == messages(4)


async def test_another_writer_in_between_is_seen(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore], use_async: bool
) -> None:
    """After another writer extended the thread, this store's next put from its own last
    checkpoint is checked against the thread as stored: a live lease taken over refuses it;
    without leases it is stored as a fork, and both branches read back whole."""
    mine, other = (Api(s, use_async) for s in stores)
    for i in range(3):
        await put(mine, i, i - 1 if i else None, lease=Lease("me", 30))
    await put(other, 3, 2, lease=Lease("other", 30))  # continues the newest: takes over
    with pytest.raises(Conflict):
        await put(mine, 4, 2, lease=Lease("me", 30))
    await put(mine, 5, 3)  # no lease: a put from other's checkpoint...
    await put(other, 6, 3)  # ...and other's fork of it
    await put(mine, 7, 5, versions={"messages": 7, "step": 7}, values={
        "messages": SequenceBlob("json", (*messages(6).items, msg(99))),
    })  # fmt: skip
    assert (await mine.get("t", checkpoint_id=cid(7))).values["messages"] == SequenceBlob(
        "json", (*messages(6).items, msg(99))
    )
    assert (await mine.get("t", checkpoint_id=cid(6))).values["messages"] == messages(7)


async def test_a_removal_in_between_never_leaves_a_broken_chain(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore], use_async: bool
) -> None:
    """When another store deletes the checkpoint this store put last (and the rows only it
    read), this store's next put from it stores its whole list rather than a delta on rows
    that are gone."""
    mine, other = (Api(s, use_async) for s in stores)
    for i in range(3):
        await put(mine, i, i - 1 if i else None)
    await put(mine, 3, 2, metadata={"run_id": "r1"})
    assert await other.delete_for_runs(["r1"]) == 1
    await put(mine, 4, 3)
    assert (await mine.get("t")).values["messages"] == messages(5)
    assert (await other.get("t", checkpoint_id=cid(2))).values["messages"] == messages(3)


async def test_a_fork_reusing_version_numbers_keeps_both_branches(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore], use_async: bool
) -> None:
    """A fork from an older checkpoint reuses the version numbers of the branch it leaves;
    the fork's next put (from this store's own last checkpoint) finds those row keys taken and
    stores its rows under its own checkpoint id: every checkpoint reads back its own list."""
    mine, _ = stores
    api = Api(mine, use_async)
    for i in range(4):
        await put(api, i, i - 1 if i else None)

    def forked(n: int) -> SequenceBlob:
        return SequenceBlob("json", (msg(0), *(msg(100 + k) for k in range(1, n))))

    await api.put("t", "fork-1", BODY, parent_id=cid(0), versions={"messages": 2},
                  values={"messages": forked(2)})  # fmt: skip
    await api.put("t", "fork-2", BODY, parent_id="fork-1", versions={"messages": 3},
                  values={"messages": forked(3)})  # fmt: skip
    assert (await api.get("t", checkpoint_id="fork-2")).values["messages"] == forked(3)
    assert (await api.get("t", checkpoint_id=cid(2))).values["messages"] == messages(3)
    assert (await api.get("t", checkpoint_id=cid(3))).values["messages"] == messages(4)


async def test_pending_writes_renew_the_lease_once_half_of_it_has_run(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore], use_async: bool, clock: Clock
) -> None:
    """Pending writes leave a lease with more than half of its time alone and renew one with
    less, so a writer that only stores pending writes keeps its thread."""
    mine, other = (Api(s, use_async) for s in stores)
    await put(mine, 0, None, lease=Lease("me", 30))
    await put(mine, 1, 0, lease=Lease("me", 30))
    for _ in range(4):  # 10 s apart: past the first 30 s only if renewed
        clock.advance(10)
        await mine.put_writes(
            "t", cid(1), [PendingWrite("task", 0, "x", Blob("json", b"1"))], lease=Lease("me", 30)
        )
    with pytest.raises(Conflict):
        await put(other, 2, 0, lease=Lease("other", 30))
    clock.advance(31)
    await put(other, 2, 0, lease=Lease("other", 30))


async def test_a_read_of_the_stores_own_last_checkpoint_reads_no_value_rows(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore],
    use_async: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read of the checkpoint this store put last takes its values from memory (one
    statement), channels left unchanged by the put included, and returns exactly what a
    store that remembers nothing reads."""
    mine, other = (Api(s, use_async) for s in stores)
    await put(mine, 0, None)
    await put(mine, 1, 0, versions={"messages": 2, "step": 1}, values={"messages": messages(2)})
    await mine.put_writes("t", cid(1), [PendingWrite("task", 0, "x", Blob("json", b"1"))])
    seen = statements(stores[0], monkeypatch)
    newest = await mine.get("t")
    by_id = await mine.get("t", checkpoint_id=cid(1))
    assert len(seen) == 2, seen
    assert newest == by_id == await other.get("t")
    assert newest.values == {"messages": messages(2), "step": Blob("json", b"0")}
    assert [w.task_id for w in newest.writes] == ["task"]


async def test_a_read_after_another_writer_reads_the_rows(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore], use_async: bool
) -> None:
    """Once another writer stored the same checkpoint id again with other values, or
    removed rows, this store's read of it returns what is stored, not what it remembers."""
    mine, other = (Api(s, use_async) for s in stores)
    for i in range(3):
        await put(mine, i, i - 1 if i else None)
    changed = SequenceBlob("json", (msg(7), msg(8)))
    await other.put("t", cid(2), BODY, parent_id=cid(1), versions={"messages": 3, "step": 3},
                    values={"messages": changed, "step": Blob("json", b"9")})  # fmt: skip
    found = await mine.get("t", checkpoint_id=cid(2))
    assert found.values == {"messages": changed, "step": Blob("json", b"9")}
    await put(mine, 3, 2)
    assert await other.prune(["t"]) == 3
    assert (await mine.get("t")).values["messages"] == messages(4)


def test_heads_keep_payloads_within_their_budget() -> None:
    """Past the payload budget the least recently written threads' heads lose their payload
    (reads of them then read the rows) but keep the rest, so puts stay fast."""
    heads = Heads(payload_budget=10)
    for thread in ("a", "b"):
        head = Head(cid(0), {"x": 1}, {}, {}, {"x": Blob("json", b"123456")})
        heads.remember("", thread, "", 1, head, keep=True)
    stamp, a = heads.get("", "a", "")
    assert stamp == 1
    assert a is not None
    assert a.payload is None
    assert a.checkpoint_id == cid(0)
    b = heads.get("", "b", "")[1]
    assert b is not None
    assert b.payload == {"x": Blob("json", b"123456")}


async def test_a_tasks_pending_writes_are_one_statement(
    stores: tuple[BaseCheckpointStore, BaseCheckpointStore],
    use_async: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task's new pending writes on a recently written thread are one statement; writes
    stored already keep their first value (the full form finds them), and a writer whose
    lease was taken over is refused on an older checkpoint."""
    mine, other = (Api(s, use_async) for s in stores)
    await put(mine, 0, None, lease=Lease("me", 30))
    first = [PendingWrite("task", i, "x", Blob("json", b"%d" % i)) for i in range(2)]
    seen = statements(stores[0], monkeypatch)
    await mine.put_writes("t", cid(0), first, lease=Lease("me", 30))
    assert len(seen) == 1, seen
    again = [PendingWrite("task", i, "x", Blob("json", b"9")) for i in range(2)]
    await mine.put_writes("t", cid(0), again, lease=Lease("me", 30))
    assert (await other.get("t")).writes == tuple(first)
    await put(other, 1, 0, lease=Lease("other", 30))  # continues the newest: takes over
    with pytest.raises(Conflict):
        await mine.put_writes(
            "t", cid(0), [PendingWrite("late", 0, "x", BODY)], lease=Lease("me", 30)
        )
