"""memfold.schema: status and upgrade (and dry runs) of every store kind a URL opens, on SQLite,
PostgreSQL, Redis and Chroma; refusal of a schema newer than this memfold; two processes
upgrading at once."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import chromadb
import pytest
import redis
from chromadb.config import Settings
from sqlalchemy import text

from memfold import Message, SchemaTooNew, open_store, schema
from memfold.backends.redis.checkpoint_keys import CHECKPOINT_LAYOUT_STEPS
from memfold.backends.redis.keys import LAYOUT_STEPS
from memfold.backends.redis.memory_store import MEMORY_LAYOUT_STEPS
from memfold.backends.sql.memory_schema import MEMORY_STEPS
from memfold.backends.sql.migrations import CHECKPOINT_STEPS, STEPS
from memfold.checkpoints import Blob, open_checkpoint_store
from memfold.memories import open_memory_store
from memfold.schema_steps import SchemaStatus
from tests.backends.release_1 import DIMENSIONS, engine_for, release_1_database
from tests.support import PG_URL, REDIS_URL, chroma_server

THREADS, CHECKPOINTS, MEMORIES = (s[-1].version for s in (STEPS, CHECKPOINT_STEPS, MEMORY_STEPS))
"""The latest SQL schema version of each store kind."""
REDIS_LAYOUTS = [
    s[-1].version for s in (LAYOUT_STEPS, CHECKPOINT_LAYOUT_STEPS, MEMORY_LAYOUT_STEPS)
]
"""The latest thread, checkpoint and memory layouts on Redis."""


@pytest.fixture(params=["sqlite", "postgresql"])
def release_1(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The URL and store options of a database holding every SQL store kind's first released
    schema and rows."""
    with release_1_database(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A fresh Redis key prefix, whose keys are deleted afterwards."""
    prefix = f"memfold-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _summary(found: list[SchemaStatus]) -> list[tuple[str, str, int, int, list[int]]]:
    return [(s.kind, s.backend, s.version, s.latest, [p.version for p in s.pending]) for s in found]


def _catalog(url: str, options: dict[str, Any]) -> list[Any]:
    """Every table, column, index, trigger and recorded step of the database (or schema)."""
    engine = engine_for(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = [*conn.execute(text("SELECT type, name, sql FROM sqlite_master ORDER BY name"))]
            rows += conn.execute(text("SELECT * FROM memfold_schema_versions ORDER BY 1, 2"))
        else:
            where = {"s": options["schema"]}
            rows = [*conn.execute(text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = :s ORDER BY 1, 2"), where)]  # fmt: skip
            rows += conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s ORDER BY 1"),
                where,
            )
            rows += conn.execute(
                text(f"SELECT * FROM {options['schema']}.memfold_schema_versions ORDER BY 1, 2")
            )
    engine.dispose()
    return rows


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_status_dry_run_and_upgrade_of_a_release_1_database(
    release_1: tuple[str, dict[str, Any]], use_async: bool
) -> None:
    """status reports each kind's version and pending steps (a PostgreSQL memory table's vector
    length is read from it); a dry run returns the same steps with their SQL and changes
    nothing; upgrade applies exactly those steps, once, keeping the data."""
    url, options = release_1
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"
    before = _catalog(url, options)
    if use_async:
        found = await schema.astatus(url, **options)
        dry = await schema.aupgrade(url, dry_run=True, **options)
    else:
        found = schema.status(url, **options)
        dry = schema.upgrade(url, dry_run=True, **options)
    assert _summary(found) == [
        ("threads", backend, 1, THREADS, list(range(2, THREADS + 1))),
        ("checkpoints", backend, 1, CHECKPOINTS, list(range(2, CHECKPOINTS + 1))),
        ("memories", backend, 1, MEMORIES, list(range(2, MEMORIES + 1))),
    ]
    assert dry == found
    assert any("messages_v1" in statement for statement in dry[0].pending[0].statements)
    assert any("cp_journal" in statement for statement in dry[1].pending[0].statements)
    assert _catalog(url, options) == before

    if use_async:
        applied = await schema.aupgrade(url, **options)
        again = await schema.aupgrade(url, **options)
    else:
        applied = schema.upgrade(url, **options)
        again = schema.upgrade(url, **options)
    assert [[p.version for p in s.pending] for s in applied] == [
        [p.version for p in s.pending] for s in found
    ]
    assert [s.pending for s in again] == [(), (), ()]
    assert all(s.up_to_date and s.version == s.latest for s in schema.status(url, **options))
    assert _catalog(url, options) != before

    with open_checkpoint_store(url, **options) as checkpoints:
        newest = checkpoints.get("t1", tenant="acme")
        assert newest is not None
        assert newest.checkpoint_id == "c2"
    with open_memory_store(url, dimensions=DIMENSIONS, **options) as memories:
        assert [h.record.id for h in memories.search(("acme",), "green tea", k=3)] == ["m1"]


def test_a_fresh_postgresql_database_leaves_memories_out_unless_dimensions_are_given(
    tmp_path: Path,
) -> None:
    """With no memory table and no dimensions, PostgreSQL memories are left out; dimensions
    size the table an upgrade creates, and from then on it is found without them."""
    db = f"memfold_test_{uuid.uuid4().hex}"
    try:
        assert [s.kind for s in schema.status(PG_URL, schema=db)] == ["threads", "checkpoints"]
        assert [s.kind for s in schema.upgrade(PG_URL, schema=db, dimensions=8)] == [
            "threads", "checkpoints", "memories",
        ]  # fmt: skip
        assert _summary(schema.status(PG_URL, schema=db))[2] == (
            "memories", "postgresql", MEMORIES, MEMORIES, [],
        )  # fmt: skip
    finally:
        engine = engine_for(PG_URL)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {db} CASCADE")
        engine.dispose()


def test_redis_layouts_report_and_record_their_steps(key_prefix: str) -> None:
    """A Redis prefix written by thread layout 1 and nothing else has the later thread steps and
    every checkpoint and memory step pending; upgrade records them, and a dry run nothing."""
    raw = redis.Redis.from_url(REDIS_URL)
    raw.set(f"{key_prefix}layout", 1)
    threads, checkpoints, memories = REDIS_LAYOUTS
    pending = [
        list(range(2, threads + 1)),
        list(range(1, checkpoints + 1)),
        list(range(1, memories + 1)),
    ]
    assert _summary(schema.status(REDIS_URL, key_prefix=key_prefix)) == [
        ("threads", "redis", 1, threads, pending[0]),
        ("checkpoints", "redis", 0, checkpoints, pending[1]),
        ("memories", "redis", 0, memories, pending[2]),
    ]
    schema.upgrade(REDIS_URL, key_prefix=key_prefix, dry_run=True)
    assert sorted(raw.keys(f"{key_prefix}*")) == [f"{key_prefix}layout".encode()]
    applied = schema.upgrade(REDIS_URL, key_prefix=key_prefix)
    assert [[p.version for p in s.pending] for s in applied] == pending
    layouts = [int(raw.get(f"{key_prefix}{k}") or 0) for k in ("layout", "c:layout", "m:layout")]
    assert layouts == REDIS_LAYOUTS
    assert all(s.up_to_date for s in schema.status(REDIS_URL, key_prefix=key_prefix))
    raw.close()


def test_a_chroma_status_creates_no_collection_and_upgrade_does(tmp_path: Path) -> None:
    """status of a Chroma directory without the collection reports version 0 and leaves it
    absent; upgrade creates it at the latest layout."""
    url = f"chroma://{tmp_path / 'chroma'}"
    assert _summary(schema.status(url, dimensions=4)) == [("memories", "chroma", 0, 1, [1])]
    client = chromadb.PersistentClient(
        str(tmp_path / "chroma"), Settings(anonymized_telemetry=False)
    )
    assert client.list_collections() == []
    assert _summary(schema.upgrade(url, dimensions=4)) == [("memories", "chroma", 0, 1, [1])]
    assert _summary(schema.status(url, dimensions=4)) == [("memories", "chroma", 1, 1, [])]
    assert [c.name for c in client.list_collections()] == ["memfold_memories"]


async def test_a_chroma_server_collection_is_inspected_and_created_async() -> None:
    """On a Chroma server, astatus reads a missing collection as version 0 without creating it,
    and aupgrade creates it."""
    url, name = chroma_server(), f"t-{uuid.uuid4().hex}"
    options: dict[str, Any] = {"dimensions": 4, "collection": name}
    assert _summary(await schema.astatus(url, **options)) == [("memories", "chroma", 0, 1, [1])]
    assert _summary(await schema.astatus(url, **options))[0][2] == 0  # still not created
    assert [p.version for p in (await schema.aupgrade(url, **options))[0].pending] == [1]
    assert _summary(await schema.astatus(url, **options)) == [("memories", "chroma", 1, 1, [])]


def test_stores_without_a_schema_and_tiered_stores(tmp_path: Path, key_prefix: str) -> None:
    """memory:// keeps no schema; a tiered URL reports its durable tier, then its hot one."""
    assert schema.status("memory://") == []
    durable = f"sqlite:///{tmp_path / 'durable.db'}"
    url = f"tiered+redis://{REDIS_URL.removeprefix('redis://')}?durable={quote(durable, safe='')}"
    found = schema.upgrade(url, hot_options={"key_prefix": key_prefix})
    assert [(s.kind, s.backend) for s in found] == [
        ("threads", "sqlite"), ("threads", "redis"),
        ("checkpoints", "sqlite"), ("checkpoints", "redis"),
    ]  # fmt: skip
    assert all(s.up_to_date for s in schema.status(url, hot_options={"key_prefix": key_prefix}))


def _bump(url: str, options: dict[str, Any], key_prefix: str, backend: str) -> None:
    """Record a checkpoint schema one step newer than this memfold's."""
    if backend == "redis":
        redis.Redis.from_url(REDIS_URL).set(f"{key_prefix}c:layout", REDIS_LAYOUTS[1] + 1)
        return
    engine = engine_for(url)
    table = f"{options['schema']}.memfold_schema_versions" if options else "memfold_schema_versions"
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO {table} VALUES ('checkpoints', :next, 'from the future', :now)"),
            {"next": CHECKPOINTS + 1, "now": time.time()},
        )
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "redis", "chroma"])
def test_a_schema_newer_than_memfold_is_refused_and_left_as_it_is(
    backend: str, tmp_path: Path, key_prefix: str
) -> None:
    """status, upgrade, a dry run and setup() all refuse a store kind whose schema a newer
    memfold made, saying to upgrade memfold, and change nothing."""
    if backend == "chroma":
        url, options = f"chroma://{tmp_path / 'chroma'}", {"dimensions": 4}
        client = chromadb.PersistentClient(
            str(tmp_path / "chroma"), Settings(anonymized_telemetry=False)
        )
        client.create_collection("memfold_memories", metadata={"memfold_layout": 2})
        for call in (schema.status, schema.upgrade):
            with pytest.raises(
                SchemaTooNew,
                match=r"chroma memories schema in collection .* at version 2.*upgrade memfold",
            ):
                call(url, **options)
        assert client.get_collection("memfold_memories").metadata == {"memfold_layout": 2}
        return
    if backend == "redis":
        url, options = REDIS_URL, {"key_prefix": key_prefix}
        schema.upgrade(url, **options)
    else:
        with release_1_database(backend, tmp_path) as (url, options):
            schema.upgrade(url, **options)
            _bump(url, options, key_prefix, backend)
            _refused(url, options, backend, key_prefix)
        return
    _bump(url, options, key_prefix, backend)
    _refused(url, options, backend, key_prefix)


def _refused(url: str, options: dict[str, Any], backend: str, key_prefix: str) -> None:
    before = _catalog(url, options) if backend != "redis" else None
    for call in (schema.status, schema.upgrade):
        with pytest.raises(
            SchemaTooNew, match=f"{backend} checkpoints schema .*at version .*upgrade memfold"
        ):
            call(url, **options)
    with pytest.raises(SchemaTooNew):
        schema.upgrade(url, dry_run=True, **options)
    with pytest.raises(SchemaTooNew):
        open_checkpoint_store(url, **options)
    with open_store(url, **options) as threads:  # other kinds are not affected
        threads.append("t", Message(role="user", content="threads still work"))
    if backend == "redis":
        found = redis.Redis.from_url(REDIS_URL).get(f"{key_prefix}c:layout")
        assert found == b"%d" % (REDIS_LAYOUTS[1] + 1)
    else:
        assert _catalog(url, options) == before


@contextmanager
def _redis_layout_1(key_prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A Redis prefix whose threads were written by layout 1 (and nothing else)."""
    raw = redis.Redis.from_url(REDIS_URL)
    raw.set(f"{key_prefix}layout", 1)
    raw.close()
    yield REDIS_URL, {"key_prefix": key_prefix}


def _upgrade_in_process(url: str, options: dict[str, Any], barrier: Any, results: Any) -> None:
    barrier.wait(60)
    found = schema.upgrade(url, **options)
    results.put([(s.kind, [p.version for p in s.pending]) for s in found])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "redis"])
def test_two_processes_upgrading_at_once_apply_each_step_once(
    backend: str, tmp_path: Path, key_prefix: str
) -> None:
    """Two processes upgrading the same first-release database (or Redis prefix) at the same
    moment both succeed, and between them apply each pending step exactly once."""
    made = (
        _redis_layout_1(key_prefix) if backend == "redis" else release_1_database(backend, tmp_path)
    )
    with made as (url, options):
        pending = {s.kind: [p.version for p in s.pending] for s in schema.status(url, **options)}
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_upgrade_in_process, args=(url, options, barrier, results))
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        applied: dict[str, list[int]] = {kind: [] for kind in pending}
        for _ in procs:
            for kind, steps in results.get(timeout=5):
                applied[kind] += steps
        assert {kind: sorted(steps) for kind, steps in applied.items()} == pending
        assert all(s.up_to_date for s in schema.status(url, **options))
        with open_store(url, **options) as threads:
            threads.append("after", Message(role="user", content="still writable"))
            assert threads.count("after") == 1
        with open_checkpoint_store(url, **options) as checkpoints:
            checkpoints.put("after", "c", Blob("json", b"{}"))
