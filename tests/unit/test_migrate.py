"""memfold.migrate: threads copied between stores message for message, re-runnable, streaming."""

from __future__ import annotations

import json
import operator
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import psycopg
import pytest
from langgraph.graph import START, StateGraph
from psycopg import sql
from typer.testing import CliRunner

import memfold
from memfold import InvalidInput, Message, MigrationResult, amigrate, migrate, ops
from memfold.backends.memory import MemoryThreadStore
from memfold.checkpoints import BaseCheckpointStore, open_checkpoint_store
from memfold.cli import app
from memfold.integrations.langgraph import MemfoldSaver
from memfold.journal import EffectJournal
from memfold.memories import BaseMemoryStore, open_memory_store
from memfold.memory_model import MemoryRecord
from memfold.recall.embedders import HashingEmbedder
from memfold.stores import BaseThreadStore
from tests.support import (
    PG_URL,
    drop_checkpoint_store,
    drop_store,
    make_memory_store,
    postgres_checkpoint_store,
    postgres_store,
    redis_store,
)

T = TypeVar("T")


def fill(
    store: BaseThreadStore, threads: int = 3, per_thread: int = 7, tenant: str = "default"
) -> None:
    for t in range(threads):
        store.append(
            f"t{t}",
            [
                Message(
                    role="user" if i % 2 else "assistant", content=f"{t}:{i}", metadata={"i": i}
                )
                for i in range(per_thread)
            ],
            tenant=tenant,
        )
        store.set_thread_metadata(f"t{t}", {"n": t}, tenant=tenant)


def same(source: BaseThreadStore, target: BaseThreadStore, tenant: str = "default") -> None:
    infos = source.list_threads(tenant=tenant, limit=1000)
    assert infos
    for info in infos:
        assert target.load(info.thread_id, tenant=tenant) == source.load(
            info.thread_id, tenant=tenant
        )
        assert target.get_thread(info.thread_id, tenant=tenant) == info  # times included


@pytest.fixture
def pg() -> Iterator[BaseThreadStore]:
    store = postgres_store()
    yield store
    drop_store(store)
    store.close()


def test_sqlite_to_postgresql_round_trip_and_rerun(tmp_path: Path, pg: BaseThreadStore) -> None:
    """Every message arrives with its id, time and metadata; a re-run moves nothing."""
    source = memfold.open_store(f"sqlite:///{tmp_path / 'src.db'}")
    fill(source)
    result = migrate(source, pg, batch_size=3)
    assert (result.threads_moved, result.messages_moved, result.failed) == (3, 21, {})
    same(source, pg)
    again = migrate(source, pg, batch_size=3)
    assert (again.threads_moved, again.messages_moved, again.threads_seen) == (0, 0, 3)
    same(source, pg)
    source.close()


async def test_memory_to_redis_round_trip_async() -> None:
    """The async twin copies memory to Redis, and resumes a half-done copy without repeats."""
    source = memfold.open_store("memory://")
    target = redis_store()
    try:
        fill(source, tenant="acme")
        await target.aappend("t1", (await source.aload("t1", tenant="acme"))[:4], tenant="acme")
        result = await amigrate(source, target, tenant="acme", batch_size=2)
        assert result.messages_moved == 21 - 4
        same(source, target, tenant="acme")
        assert (await amigrate(source, target, tenant="acme")).messages_moved == 0
    finally:
        drop_store(target)
        await target.aclose()


def test_only_the_named_threads_move_and_progress_is_reported() -> None:
    """``thread_ids`` limits the copy; ``progress`` hears of every batch."""
    source, target = memfold.open_store(), memfold.open_store()
    fill(source)
    seen: list[tuple[str, int]] = []
    result = migrate(
        source, target, thread_ids=["t2"], batch_size=5, progress=lambda *a: seen.append(a)
    )
    assert result.messages_moved == 7
    assert [i.thread_id for i in target.list_threads()] == ["t2"]
    assert seen == [("t2", 2), ("t2", 5)]  # pages end at the newest message


class Broken(MemoryThreadStore):
    """A target whose appends to thread ``bad`` fail."""

    def execute(self, op: ops.Op[T]) -> T:
        if isinstance(op, ops.AppendMessages) and op.thread_id == "t1":
            raise memfold.BackendUnavailable("disk on fire")
        return super().execute(op)

    async def aexecute(self, op: ops.Op[T]) -> T:
        return self.execute(op)


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_failing_thread_is_reported_not_fatal(use_async: bool) -> None:
    """The other threads are copied; the failed one is listed with its error."""
    source, target = memfold.open_store(), Broken()
    fill(source)
    result: MigrationResult
    if use_async:
        result = await amigrate(source, target, thread_ids=["t0", "t1", "missing", "t2"])
    else:
        result = migrate(source, target, thread_ids=["t0", "t1", "missing", "t2"])
    assert result.messages_moved == 14
    assert set(result.failed) == {"t1", "missing"}
    assert "disk on fire" in result.failed["t1"]
    assert target.count("t2") == 7


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"batch_size": True}, {"thread_ids": "t1"}, {"tenant": ""}]
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    """Bad arguments raise InvalidInput before anything is copied."""
    with pytest.raises(InvalidInput):
        migrate(memfold.open_store(), memfold.open_store(), **kwargs)  # type: ignore[arg-type]


def test_the_cli_migrates_with_a_progress_bar(tmp_path: Path) -> None:
    """``memfold migrate SRC_URL DST_URL`` copies and says how much it moved."""
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with memfold.open_store(src) as source:
        fill(source)
    result = CliRunner().invoke(app, ["migrate", src, dst, "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "Migrated 21 messages in 3 threads" in result.stdout
    with memfold.open_store(dst) as target:
        assert target.count("t1") == 7


FILL = """
import sys
import memfold
from memfold import Message

source = memfold.open_store(sys.argv[1])
for t in range(10):
    for start in range(0, 10_000, 2_000):
        source.append(f"t{t}", [Message(role="user", content=f"message {t}/{i} " + "x" * 200)
                                for i in range(start, start + 2_000)])
"""

# Run in a process of its own, so that its peak RSS is the migration's alone. The peak is
# VmHWM of this process's own memory map: ru_maxrss would carry over the forking parent's.
MIGRATE = """
import json, sys, time
import memfold


def peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


started = time.monotonic()
source = memfold.open_store(sys.argv[1])
target = memfold.open_store(sys.argv[2], schema=sys.argv[3])
result = memfold.migrate(source, target)
print(json.dumps({
    "moved": result.messages_moved, "failed": result.failed,
    "counts": [target.count(f"t{t}") for t in range(10)],
    "peak_mb": peak_mb(),
    "seconds": time.monotonic() - started,
}))
"""


def test_100k_messages_sqlite_to_postgresql_in_bounded_memory(
    tmp_path: Path, pg: BaseThreadStore
) -> None:
    """A 100,000-message migration finishes with matching counts and peak RSS under 300 MB."""
    schema = getattr(pg, "tables").schema  # noqa: B009
    source = f"sqlite:///{tmp_path / 'big.db'}"
    subprocess.run([sys.executable, "-c", textwrap.dedent(FILL), source], timeout=300, check=True)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MIGRATE), source, PG_URL, schema],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["moved"] == 100_000
    assert report["failed"] == {}
    assert report["counts"] == [10_000] * 10
    assert report["peak_mb"] < 300, report


# Checkpoints: a real LangGraph graph's history, read back through the saver after migration.


class Items(TypedDict):
    items: Annotated[list[str], operator.add]


class _SignallingSaver(MemfoldSaver):
    """A saver that says when the ``ok`` task's pending writes are stored."""

    ok_written: threading.Event

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        super().put_writes(config, writes, task_id, task_path)
        if task_path.endswith(", ok"):
            self.ok_written.set()


def failing_graph(saver: MemfoldSaver, fail: list[bool]) -> Any:
    """Two parallel nodes; ``boom`` raises while ``fail[0]``, leaving ``ok``'s pending write.

    ``boom`` raises only once ``ok``'s write is stored (or after 10 s): LangGraph drops the
    writes of a task that finishes after another one's error has shut its executor down."""
    ok_written = threading.Event()
    if isinstance(saver, _SignallingSaver):
        saver.ok_written = ok_written

    def boom(state: Items) -> Items:
        if fail[0]:
            ok_written.wait(10)
            raise RuntimeError("boom")
        return {"items": ["boom"]}

    builder = StateGraph(Items)
    builder.add_node("ok", lambda state: {"items": [f"ok{len(state['items'])}"]})
    builder.add_node("boom", boom)
    builder.add_edge(START, "ok").add_edge(START, "boom")
    return builder.compile(checkpointer=saver)


def run_graph(store: BaseCheckpointStore) -> list[Any]:
    """Two threads: one run to the end twice, one stopped by an error with a pending write."""
    saver = _SignallingSaver(store, lease_seconds=None)
    fail = [False]
    graph = failing_graph(saver, fail)
    for thread_id in ("g1", "g2"):
        graph.invoke({"items": ["a"]}, {"configurable": {"thread_id": thread_id}})
    fail[0] = True
    saver.ok_written.clear()  # set by the runs above: boom now waits for this run's write
    with pytest.raises(RuntimeError, match="boom"):
        graph.invoke({"items": ["b"]}, {"configurable": {"thread_id": "g2"}})
    EffectJournal(store).record("g2", "call-1", {"refund": 42})
    return history(store)


def history(store: BaseCheckpointStore) -> list[Any]:
    graph = failing_graph(MemfoldSaver(store, lease_seconds=None), [True])
    return [list(graph.get_state_history({"configurable": {"thread_id": t}})) for t in ("g1", "g2")]


@pytest.fixture
def pg_checkpoints() -> Iterator[BaseCheckpointStore]:
    store = postgres_checkpoint_store()
    yield store
    drop_checkpoint_store(store)
    store.close()


def test_checkpoints_sqlite_to_postgresql_keep_langgraph_history(
    tmp_path: Path, pg_checkpoints: BaseCheckpointStore
) -> None:
    """Every checkpoint, its pending writes and the journal arrive; a re-run moves nothing."""
    source = open_checkpoint_store(f"sqlite:///{tmp_path / 'src.db'}")
    before = run_graph(source)
    tasks = {task.name: task for task in before[1][0].tasks}  # the pending writes
    assert tasks["ok"].result == {"items": ["ok4"]}
    assert tasks["boom"].error is not None
    result = migrate(source, pg_checkpoints, batch_size=2)
    assert result.failed == {}
    assert result.checkpoints_moved == sum(map(len, before))
    assert (result.journal_entries_moved, result.checkpoint_threads_seen) == (1, 2)
    assert history(pg_checkpoints) == before
    assert pg_checkpoints.list_checkpoints() == source.list_checkpoints()  # times included
    journals = [EffectJournal(s).list_entries("g2") for s in (source, pg_checkpoints)]
    assert journals[1] == journals[0]
    assert EffectJournal(pg_checkpoints).get("g2", "call-1").result == {"refund": 42}  # type: ignore[union-attr]
    again = migrate(source, pg_checkpoints, batch_size=2)
    assert (again.checkpoints_moved, again.journal_entries_moved, again.failed) == (0, 0, {})
    assert history(pg_checkpoints) == before
    source.close()


async def test_checkpoints_memory_to_sqlite_async_resume(tmp_path: Path) -> None:
    """The async twin resumes a half-done copy: only the missing checkpoints are stored."""
    source = open_checkpoint_store("memory://")
    target = open_checkpoint_store(f"sqlite:///{tmp_path / 'dst.db'}")
    before = run_graph(source)
    first = await amigrate(source, target, thread_ids=["g1"])
    assert (first.checkpoints_moved, first.checkpoint_threads_seen) == (len(before[0]), 1)
    result = await amigrate(source, target, batch_size=3)
    assert (result.checkpoints_moved, result.failed) == (len(before[1]), {})
    assert history(target) == before
    await target.aclose()


def test_urls_move_threads_and_checkpoints_together(tmp_path: Path) -> None:
    """Two URLs move every kind both open; the CLI does the same and reports both."""
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with memfold.open_store(src) as threads:
        fill(threads)
    with open_checkpoint_store(src) as checkpoints:
        before = run_graph(checkpoints)
    result = migrate(src, dst)
    assert (result.messages_moved, result.checkpoints_moved) == (21, sum(map(len, before)))
    with open_checkpoint_store(dst) as checkpoints:
        assert history(checkpoints) == before
    cli = CliRunner().invoke(app, ["migrate", src, f"sqlite:///{tmp_path / 'c.db'}"])
    assert cli.exit_code == 0, cli.output
    assert f", {sum(map(len, before))} checkpoints and 0 memories" in cli.stdout


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_threads_own_ttl_is_copied(tmp_path: Path, use_async: bool) -> None:
    """The target thread gets the source thread's own TTL; a re-run with the TTL cleared
    clears it, and one with nothing changed changes nothing."""
    source = memfold.open_store()
    target = memfold.open_store(f"sqlite:///{tmp_path / 'b.db'}")
    fill(source)
    assert source.set_thread_ttl("t1", 90)

    async def run() -> MigrationResult:
        return await amigrate(source, target) if use_async else migrate(source, target)

    assert (await run()).threads_moved == 3
    assert [target.get_thread_ttl(f"t{i}") for i in range(3)] == [None, 90.0, None]
    assert (await run()).threads_moved == 0
    assert source.set_thread_ttl("t1", None)
    assert (await run()).threads_moved == 1
    assert target.get_thread_ttl("t1") is None
    target.close()


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_checkpoint_threads_own_ttl_is_copied(
    tmp_path: Path, use_async: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target checkpoint thread gets the source's own TTL; a re-run with nothing changed
    moves and sets nothing, and one with the TTL changed or cleared copies that."""
    source = open_checkpoint_store("memory://")
    target = open_checkpoint_store(f"sqlite:///{tmp_path / 'b.db'}")
    run_graph(source)
    assert source.set_thread_ttl("g1", 90)
    sets: list[tuple[Any, ...]] = []
    for name in ("set_thread_ttl", "aset_thread_ttl"):
        original = getattr(target, name)

        def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            sets.append(args)
            return _original(*args, **kwargs)

        monkeypatch.setattr(target, name, spy)

    async def run() -> MigrationResult:
        return await amigrate(source, target) if use_async else migrate(source, target)

    assert (await run()).checkpoints_moved > 0
    assert [target.get_thread_ttl(t) for t in ("g1", "g2")] == [90.0, None]
    assert sets == [("g1", 90.0)]
    again = await run()
    assert (again.checkpoints_moved, again.journal_entries_moved, again.failed) == (0, 0, {})
    assert sets == [("g1", 90.0)]
    assert source.set_thread_ttl("g1", 30)
    assert source.set_thread_ttl("g2", 45)
    assert (await run()).checkpoints_moved == 0
    assert [target.get_thread_ttl(t) for t in ("g1", "g2")] == [30.0, 45.0]
    assert source.set_thread_ttl("g1", None)
    await run()
    assert target.get_thread_ttl("g1") is None
    target.close()


@pytest.mark.parametrize("use_async", [False, True])
async def test_urls_move_a_named_thread_that_only_one_store_kind_holds(
    tmp_path: Path, use_async: bool
) -> None:
    """A named LangGraph run (checkpoints, no chat thread) and a named chat thread (no
    checkpoints) move from the kind that holds them, with nothing failed; a name that neither
    holds fails, and the CLI exits 0 or 1 accordingly."""
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with memfold.open_store(src) as threads:
        fill(threads)
    with open_checkpoint_store(src) as checkpoints:
        before = run_graph(checkpoints)
    named = ["g2", "t1"]
    result = (
        await amigrate(src, dst, thread_ids=named)
        if use_async
        else migrate(src, dst, thread_ids=named)
    )
    assert result.failed == {}
    assert (result.messages_moved, result.checkpoints_moved) == (7, len(before[1]))
    with open_checkpoint_store(dst) as checkpoints:
        assert history(checkpoints)[1] == before[1]
    with memfold.open_store(dst) as threads:
        assert [i.thread_id for i in threads.list_threads()] == ["t1"]
    missing = migrate(src, dst, thread_ids=["g1", "nope"])
    assert list(missing.failed) == ["nope"]
    assert missing.checkpoints_moved == len(before[0])
    cli = CliRunner().invoke(
        app, ["migrate", src, f"sqlite:///{tmp_path / 'c.db'}", "--thread", "g2"]
    )
    assert cli.exit_code == 0, cli.output
    assert f", {len(before[1])} checkpoints and 0 memories" in cli.stdout
    cli = CliRunner().invoke(
        app, ["migrate", src, f"sqlite:///{tmp_path / 'd.db'}", "--thread", "nope"]
    )
    assert cli.exit_code == 1, cli.output


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (lambda: memfold.open_store(), lambda: open_checkpoint_store()),
        (lambda: "memory://", lambda: open_checkpoint_store()),
        (lambda: object(), lambda: object()),
        (lambda: "nosuch://x", lambda: "memory://"),
    ],
)
def test_mismatched_or_unknown_stores_are_refused(
    source: Callable[[], Any], target: Callable[[], Any]
) -> None:
    """Stores of two kinds, a URL with a store, or an unknown URL raise InvalidInput."""
    with pytest.raises(InvalidInput):
        migrate(source(), target())


def fill_memories(store: BaseMemoryStore, per_namespace: int = 5) -> None:
    for user in ("ann", "bob"):
        store.put_many(
            [
                MemoryRecord(
                    ("default", user),
                    f"m{i}",
                    f"{user} likes topic {i} and tea",
                    {"i": i},
                    importance=i / 10,
                    ttl_seconds=3600.0 if i % 2 else None,
                )
                for i in range(per_namespace)
            ]
        )
    store.put(("default", "ann", "notes"), "ann keeps notes on tea", id="n1")


def memories(store: BaseMemoryStore) -> list[tuple[object, ...]]:
    """Every field, times included, by namespace and id."""
    return sorted(
        [
            (
                r.namespace,
                r.id,
                r.text,
                dict(r.value),
                r.embedding,
                r.embedding_model,
                r.importance,
                r.ttl_seconds,
                r.created_at,
                r.updated_at,
                r.last_used_at,
                r.expires_at,
            )
            for r in store.list_records(("default",), limit=1000, include_embedding=True)
        ],
        key=repr,
    )


def test_memories_sqlite_to_postgresql_search_equal_and_rerun(tmp_path: Path) -> None:
    """Records arrive with their vectors and models (the target has no embedder, so none is
    made again); searches rank the same; a re-run moves nothing and duplicates nothing."""
    source = make_memory_store("sqlite", tmp_path)
    fill_memories(source)
    target = make_memory_store(
        "postgresql", tmp_path, embedder=None, dimensions=64, dedupe_threshold=0.5
    )
    try:
        result = migrate(source, target, batch_size=2)
        assert (result.memories_moved, result.memory_namespaces_seen, result.failed) == (11, 3, {})
        assert memories(target) == memories(source)
        assert source.embedder is not None
        assert all(r[4] is not None and r[5] == source.embedder.model for r in memories(target))
        for query in ("ann tea", "topic 3"):
            vector = source.embedder.embed([query], kind="query")[0]
            want = source.search(("default",), query, vector=vector, k=20)
            got = target.search(("default",), query, vector=vector, k=20)
            assert [h.record for h in got] == [h.record for h in want]
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
        again = migrate(source, target, batch_size=2)
        assert (again.memories_moved, again.failed) == (0, {})
        assert target.count(("default",)) == 11
    finally:
        drop_checkpoint_store(target)  # type: ignore[arg-type]  # drops the test schema
        target.close()
        source.close()


async def test_memories_memory_to_sqlite_async(tmp_path: Path) -> None:
    """The async twin copies what the target lacks, namespace by namespace, with progress."""
    source = make_memory_store("memory", tmp_path)
    fill_memories(source)
    target = make_memory_store("sqlite", tmp_path, embedder=None)
    await target.aput(("default", "bob"), "already here", id="m1")
    seen: list[tuple[str, int]] = []
    result = await amigrate(source, target, batch_size=3, progress=lambda k, n: seen.append((k, n)))
    assert (result.memories_moved, result.failed) == (10, {})
    assert sum(n for key, n in seen if key == "memories:default/bob") == 4
    assert (await target.aget(("default", "bob"), "m1")).text == "already here"  # type: ignore[union-attr]
    assert await target.acount(("default",)) == 11
    assert (await amigrate(source, target)).memories_moved == 0
    await target.aclose()


def test_memory_urls_move_and_the_cli_says_so(tmp_path: Path) -> None:
    """Two URLs move memories too, and the CLI counts them."""
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with open_memory_store(src) as store:
        fill_memories(store)
    cli = CliRunner().invoke(app, ["migrate", src, dst])
    assert cli.exit_code == 0, cli.output
    assert "0 checkpoints and 11 memories" in cli.stdout
    with open_memory_store(dst) as target:
        assert target.count(("default",)) == 11


def test_the_cli_migrates_from_a_url_that_opens_only_memories(tmp_path: Path) -> None:
    """A Chroma URL (memories only) migrates from the CLI as it does through the API (the CLI
    failed with "unknown store URL" while sizing its progress bar; found by fuzzing migrate)."""
    src = f"chroma://{tmp_path / 'src'}?dimensions=16"
    with open_memory_store(src, embedder=HashingEmbedder(16)) as store:
        fill_memories(store)
    cli = CliRunner().invoke(app, ["migrate", src, f"sqlite:///{tmp_path / 'b.db'}"])
    assert cli.exit_code == 0, cli.output
    assert "0 checkpoints and 11 memories" in cli.stdout
    with open_memory_store(f"sqlite:///{tmp_path / 'b.db'}") as target:
        assert target.count(("default",)) == 11


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL of a schema no store has set up yet (dropped after the test)."""
    schema = f"memfold_test_{uuid.uuid4().hex}"
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_kind_the_target_url_cannot_open_is_reported_not_skipped(
    tmp_path: Path, pg_schema_url: str, use_async: bool
) -> None:
    """Memories migrated into a fresh PostgreSQL URL without ``?dimensions=`` were silently left
    behind (the target opened no memory store, and the pair was dropped); now the result and
    the CLI say which kind did not move and why, and the CLI exits 1. Threads still move."""
    src = f"sqlite:///{tmp_path / 'a.db'}"
    with open_memory_store(src) as store:
        fill_memories(store)
    with memfold.open_store(src) as threads:
        fill(threads, threads=2)
    result = await amigrate(src, pg_schema_url) if use_async else migrate(src, pg_schema_url)
    assert (result.threads_moved, result.memories_moved, result.failed) == (2, 0, {})
    assert list(result.kinds_not_moved) == ["memories"]
    assert "dimensions" in result.kinds_not_moved["memories"]
    cli = CliRunner().invoke(app, ["migrate", src, pg_schema_url])
    assert cli.exit_code == 1
    assert "not migrated: memories: the target URL opens no memories store" in cli.stderr
    with_dimensions = migrate(src, f"{pg_schema_url}&dimensions=64")
    assert (with_dimensions.memories_moved, with_dimensions.kinds_not_moved) == (11, {})


def test_a_kind_the_source_does_not_hold_is_skipped_quietly(tmp_path: Path) -> None:
    """SQLite threads into a Chroma URL (memories only) are reported; an SQLite file holding
    only memories moves into it with nothing to report, and naming threads leaves memories
    out of the check as it leaves them out of the move."""
    src, chroma = f"sqlite:///{tmp_path / 'a.db'}", f"chroma://{tmp_path / 'c'}?dimensions=16"
    with open_memory_store(src, embedder=HashingEmbedder(16)) as store:
        fill_memories(store)
    assert migrate(src, chroma).kinds_not_moved == {}
    assert migrate(src, chroma, thread_ids=["t0"]).kinds_not_moved == {}
    with memfold.open_store(src) as threads:
        fill(threads, threads=1)
    assert list(migrate(src, chroma).kinds_not_moved) == ["threads"]
    assert list(migrate(src, chroma, thread_ids=["t0"]).kinds_not_moved) == ["threads"]
    assert migrate(src, chroma, thread_ids=["t9"]).kinds_not_moved == {}
