"""Many writers at once: appends lose and duplicate nothing and keep the documented order, and
checkpoint writers on one thread are refused with Conflict as `Lease` specifies.

Writers are processes (each with its own store, on the backends other processes can share),
asyncio tasks on one store's async API, and, on the in-process memory backend, OS threads on
its sync API. Each appends to one thread they all share and to a thread of its own, some
appends a batch of several messages. docs/guarantees.md states what is checked: a thread has
one order that every reader sees; each append lands whole and contiguous, exactly once; a
writer's appends keep their order; and an append acknowledged before another one starts comes
before it (appends are linearizable). ``time.monotonic`` is one clock for every process on the
machine, so the last rule is checked across processes too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from memfold import Conflict, Message, open_store
from memfold.checkpoints import BaseCheckpointStore, Blob, Lease, open_checkpoint_store
from memfold.stores import BaseThreadStore
from tests.backends.test_checkpoints import make_checkpoint_store
from tests.reliability.processes import context
from tests.support import (
    BACKENDS,
    PG_URL,
    REDIS_URL,
    Api,
    drop_checkpoint_store,
    drop_store,
    make_store,
)

WRITERS = 4
APPENDS = 24  # appends per writer to the shared thread (and as many to its own)
BATCH = 3  # every fourth append to the shared thread carries this many messages
STEPS = 8  # checkpoints each writer gets stored


SHARED_BACKENDS = [b for b in BACKENDS if b != "memory"]
"""Backends several processes can open at once."""


@dataclass(frozen=True, slots=True)
class Append:
    """One acknowledged append to the shared thread: its message ids and when the call started
    and returned."""

    ids: tuple[str, ...]
    started: float
    returned: float


def batch(writer: int, k: int) -> list[Message]:
    size = BATCH if k % 4 == 0 else 1
    return [
        Message(
            role="user", content=f"writer {writer} append {k} part {j}", id=f"w{writer}-{k:03d}-{j}"
        )
        for j in range(size)
    ]


async def append_all(api: Api, writer: int) -> list[Append]:
    """Append `APPENDS` times to the shared thread and to the writer's own, alternately."""
    done: list[Append] = []
    for k in range(APPENDS):
        messages = batch(writer, k)
        started = time.monotonic()
        await api.append("shared", messages)
        done.append(Append(tuple(str(m.id) for m in messages), started, time.monotonic()))
        await api.append(f"own-{writer}", Message(role="user", content=str(k), id=f"own-{k:03d}"))
    return done


def check_appends(store: BaseThreadStore, appends: list[Append], writers: int) -> None:
    """What the shared and own threads must hold after every writer's `append_all`."""
    messages = store.load("shared")
    ids = [str(m.id) for m in messages]
    position = {m: p for p, m in enumerate(ids)}
    assert len(position) == len(ids), "a message is stored twice"
    assert set(ids) == {m for a in appends for m in a.ids}, "lost or unknown messages"
    assert store.count("shared") == store.get_thread("shared").message_count == len(ids)
    for a in appends:
        first = position[a.ids[0]]
        assert [position[m] for m in a.ids] == list(range(first, first + len(a.ids))), (
            f"append {a.ids[0]} is not contiguous"
        )
    for w in range(writers):
        mine = [m for m in ids if m.startswith(f"w{w}-")]
        assert mine == sorted(mine), f"writer {w}'s appends are out of order"
    # Linearizable: an append that returned before another started comes before it.
    by_position = sorted(appends, key=lambda a: position[a.ids[0]])
    earliest_return_after = float("inf")
    for a in reversed(by_position):
        assert earliest_return_after >= a.started, (
            f"append {a.ids[0]} is placed before an append that returned before it started"
        )
        earliest_return_after = min(earliest_return_after, a.returned)
    # One order for every reader: the tail and the pages agree with the whole.
    assert [str(m.id) for m in store.load("shared", last=7)] == ids[-7:]
    assert [str(m.id) for m in store.load("shared", before=ids[-7], last=5)] == ids[-12:-7]
    if store.name == "tiered":
        assert [str(m.id) for m in store.durable.load("shared")] == ids  # type: ignore[attr-defined]
    for w in range(writers):
        assert [m.id for m in store.load(f"own-{w}")] == [f"own-{k:03d}" for k in range(APPENDS)]


# Process writers reopen the store from its URL and options.


def reopen(store: Any, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The URL and options that open ``store`` (a thread or checkpoint store) again."""
    if store.name == "sqlite":
        return str(store.engine.url), {}
    if store.name == "postgresql":
        return PG_URL, {"schema": store.tables.schema}
    if store.name == "redis":
        return REDIS_URL, {"key_prefix": store.key_prefix}
    hot, durable = reopen(store.hot, tmp_path), reopen(store.durable, tmp_path)
    url = f"tiered+{hot[0]}?durable={quote(durable[0], safe='')}"
    return url, {"hot_options": hot[1], "durable_options": durable[1]}


def appender_process(
    url: str, options: dict[str, Any], writer: int, ready: Any, results: Any
) -> None:
    store = open_store(url, setup=False, **options)
    try:
        ready.wait(60)  # every writer has its store open: go
        results.put((writer, asyncio.run(append_all(Api(store, False), writer))))
    finally:
        store.close()


@pytest.fixture
def threads_store(backend: str, tmp_path: Path) -> Iterator[BaseThreadStore]:
    store = make_store(backend, tmp_path)
    yield store
    drop_store(store)
    store.close()


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_processes_appending_at_once_keep_every_message_in_order(
    threads_store: BaseThreadStore, tmp_path: Path
) -> None:
    """Processes, each with its own store, append to one thread and their own at once."""
    url, options = reopen(threads_store, tmp_path)
    results, ready = context.Queue(), context.Barrier(WRITERS)
    processes = [
        context.Process(target=appender_process, args=(url, options, w, ready, results))
        for w in range(WRITERS)
    ]
    for p in processes:
        p.start()
    appends = [a for _ in processes for a in results.get(timeout=120)[1]]
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    check_appends(threads_store, appends, WRITERS)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_tasks_appending_at_once_keep_every_message_in_order(
    threads_store: BaseThreadStore,
) -> None:
    """Tasks on one event loop append through one store's async API at once."""
    done = await asyncio.gather(*(append_all(Api(threads_store, True), w) for w in range(WRITERS)))
    await threads_store.aclose()
    check_appends(threads_store, [a for appends in done for a in appends], WRITERS)


@pytest.mark.parametrize("backend", ["memory"])
def test_threads_appending_at_once_keep_every_message_in_order(
    threads_store: BaseThreadStore,
) -> None:
    """OS threads append through one in-process store's sync API at once."""
    done: list[list[Append]] = [[] for _ in range(WRITERS)]
    ready = threading.Barrier(WRITERS)

    def run(w: int) -> None:
        ready.wait(10)
        done[w] = asyncio.run(append_all(Api(threads_store, False), w))

    workers = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    check_appends(threads_store, [a for appends in done for a in appends], WRITERS)


# Checkpoint writers on one thread.

BODY = Blob("json", b"{}")


def put_args(
    writer: str, step: int, parent: str, checkpoint_id: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = ("shared", checkpoint_id, BODY)
    kwargs = {
        "parent_id": parent, "versions": {"n": step},
        "values": {"n": Blob("json", str(step).encode())}, "lease": Lease(writer, 60),
    }  # fmt: skip
    return args, kwargs


async def race(api: Api, writer: str) -> tuple[str, int, str | None]:
    """Extend the thread from ``0000`` in a chain of the writer's own; returns how many puts
    were stored and the Conflict that stopped the writer, if one did."""
    parent, done = "0000", 0
    try:
        for step in range(1, STEPS + 1):
            args, kwargs = put_args(writer, step, parent, f"{step:04d}-{writer}")
            await api.put(*args, **kwargs)
            parent, done = args[1], done + 1
    except Conflict as exc:
        return writer, done, str(exc)
    return writer, done, None


async def relay(api: Api, writer: str) -> tuple[str, list[str], int]:
    """Get `STEPS` checkpoints stored, each from the writer's last one, or, after a Conflict,
    from the thread's newest (which takes the lease over); returns them and the refusals.
    Checkpoint ids grow with time, as LangGraph's do, so the newest is the last stored."""
    newest = await api.get("shared")
    parent, refused = newest.checkpoint_id, 0
    stored: list[str] = []
    while len(stored) < STEPS:
        step = len(stored) + 1
        args, kwargs = put_args(writer, step, parent, f"{time.monotonic_ns():020d}-{writer}")
        try:
            await api.put(*args, **kwargs)
        except Conflict:
            refused += 1
            parent = (await api.get("shared")).checkpoint_id
            await asyncio.sleep(0.001)
            continue
        stored.append(args[1])
        parent = args[1]
    return writer, stored, refused


def chain(store: BaseCheckpointStore) -> list[str]:
    """The thread's checkpoint ids from the newest back to ``0000``, checking that they form
    one unforked chain: each stored checkpoint is the parent of at most one other."""
    listed = store.list_checkpoints("shared")
    parents = [c.parent_id for c in listed if c.parent_id is not None]
    assert len(parents) == len(set(parents)), "two writers extended the same checkpoint"
    by_id = {c.checkpoint_id: c for c in listed}
    (head,) = set(by_id) - set(parents)
    path, at = [], by_id[head]
    while True:
        path.append(at.checkpoint_id)
        if at.parent_id is None:
            break
        at = by_id[at.parent_id]
    assert sorted(path) == sorted(by_id), "checkpoints off the chain"
    return path


def checkpoint_process(
    url: str, options: dict[str, Any], job: str, writer: str, ready: Any, results: Any
) -> None:
    store = open_checkpoint_store(url, setup=False, **options)
    try:
        work = race if job == "race" else relay
        ready.wait(60)  # every writer has its store open: go
        results.put(asyncio.run(work(Api(store, False), writer)))  # type: ignore[arg-type]
    finally:
        store.close()


@pytest.fixture(params=BACKENDS)
def checkpoints(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointStore]:
    store = make_checkpoint_store(str(request.param), tmp_path)
    store.put("shared", "0000", BODY, versions={"n": 0}, values={"n": Blob("json", b"0")})
    yield store
    store.close()
    drop_checkpoint_store(store)


async def run_writers(store: BaseCheckpointStore, job: str, tmp_path: Path) -> list[Any]:
    """Run `WRITERS` writers of ``job`` at once: processes where the backend is shared, else
    tasks on the async API."""
    names = [chr(ord("A") + w) for w in range(WRITERS)]
    if store.name == "memory":
        work = race if job == "race" else relay
        return list(await asyncio.gather(*(work(Api(store, True), n) for n in names)))  # type: ignore[arg-type]
    url, options = reopen(store, tmp_path)
    results, ready = context.Queue(), context.Barrier(WRITERS)
    processes = [
        context.Process(target=checkpoint_process, args=(url, options, job, n, ready, results))
        for n in names
    ]
    for p in processes:
        p.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    return outcomes


async def test_checkpoint_writers_racing_from_one_head_leave_one_chain(
    checkpoints: BaseCheckpointStore, tmp_path: Path
) -> None:
    """Writers all extending the thread from its newest checkpoint at once: exactly one gets
    every step stored, each other one is refused with Conflict at its first put."""
    outcomes = await run_writers(checkpoints, "race", tmp_path)
    finished = [o for o in outcomes if o[2] is None]
    refused = [o for o in outcomes if o[2] is not None]
    assert len(finished) == 1, outcomes
    assert finished[0][1] == STEPS, outcomes
    assert [o[1] for o in refused] == [0] * (WRITERS - 1), outcomes
    assert all("another live writer" in o[2] for o in refused), outcomes
    winner = finished[0][0]
    assert chain(checkpoints) == [f"{s:04d}-{winner}" for s in range(STEPS, 0, -1)] + ["0000"]


async def test_checkpoint_writers_taking_over_from_the_newest_never_fork_the_thread(
    checkpoints: BaseCheckpointStore, tmp_path: Path
) -> None:
    """Writers that, when refused, continue from the thread's newest checkpoint (and so take
    the lease over) all get their steps stored, in one unforked chain."""
    outcomes = await run_writers(checkpoints, "relay", tmp_path)
    path = chain(checkpoints)
    assert len(path) == 1 + WRITERS * STEPS
    for writer, stored, _refused in outcomes:
        mine = [c for c in reversed(path) if c.endswith(f"-{writer}")]
        assert mine == stored, f"writer {writer}'s checkpoints are not all on the chain in order"
