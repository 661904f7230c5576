"""PostgreSQL-only behaviours: URLs and engines, schemas, dropped connections, PgBouncer safety,
concurrent setup, full-text search that matches the other backends, NUL bytes, and checkpoint
reads in one statement."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import re
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine, event, text
from sqlalchemy.ext.asyncio import create_async_engine

import memfold
from memfold import BackendUnavailable, InvalidInput, Message, Part, ToolCall
from memfold.backends.sql import SQLThreadStore, migrations
from memfold.backends.sql import postgres as pg_driver
from memfold.checkpoints import (
    Blob,
    ChannelHistory,
    PendingWrite,
    SequenceBlob,
    open_checkpoint_store,
)
from memfold.stores import BaseThreadStore
from tests.backends.test_checkpoint_heads import BODY, statements
from tests.backends.test_checkpoints import cid, messages, msg
from tests.support import (
    PG_URL,
    drop_checkpoint_store,
    drop_store,
    postgres_checkpoint_store,
    postgres_store,
)


def new_schema() -> str:
    return f"memfold_test_{uuid.uuid4().hex}"


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own, outside every store."""
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc}\n"
                    "start the servers with `sudo scripts/services.sh`", pytrace=False)  # fmt: skip
    with conn:
        yield conn


@pytest.fixture
def schema(admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A fresh schema name, dropped afterwards (stores create it in setup)."""
    name = new_schema()
    yield name
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg() -> Iterator[BaseThreadStore]:
    """A set-up PostgreSQL store in a fresh schema."""
    store = postgres_store()
    yield store
    drop_store(store)
    store.close()


def named(schema: str, url: str = PG_URL) -> str:
    """``url`` with ``application_name`` set, so the server lists the store's connections."""
    return url + ("&" if "?" in url else "?") + f"application_name={schema}"


def kill_connections(admin: psycopg.Connection[Any], schema: str) -> list[int]:
    """Terminate every connection opened with `named` ``schema``, and wait until they are
    gone."""
    pids = [
        pid
        for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (schema,)
        )
    ]
    admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    deadline = time.monotonic() + 10
    while admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
    ).fetchone() != (0,):
        assert time.monotonic() < deadline, "terminated backends did not exit"
        time.sleep(0.01)
    return pids


def user(text: str, **kwargs: Any) -> Message:
    return Message(role="user", content=text, **kwargs)


# URLs, engines, schemas and prefixes.


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgres_urls_open_the_sql_store(scheme: str, schema: str) -> None:
    """postgresql://, postgres:// and postgresql+psycopg:// all open the PostgreSQL store."""
    url = PG_URL.replace("postgresql://", f"{scheme}://", 1)
    with memfold.open_store(url, schema=schema) as store:
        assert store.name == "postgresql"
        assert store.capabilities.full_text_search
        store.append("t", user("hi"))
        assert store.count("t") == 1


@pytest.mark.parametrize("url", ["postgresql+asyncpg://x/y", "postgresql+psycopg2://x/y"])
def test_other_postgres_drivers_are_refused(url: str) -> None:
    """memfold runs its statements through psycopg 3 only, and says so."""
    with pytest.raises(InvalidInput, match="psycopg 3"):
        SQLThreadStore(url)


@pytest.mark.parametrize("bad", ["Upper", "x; DROP TABLE y", "pg_catalog", "a" * 64, "", 5])
def test_bad_schema_names_are_refused(bad: Any) -> None:
    """A schema name that is not a plain lower-case identifier raises InvalidInput."""
    with pytest.raises(InvalidInput, match="schema"):
        SQLThreadStore(PG_URL, schema=bad)


def test_options_of_another_database_are_refused(tmp_path: Any) -> None:
    """SQLite has no schema or pool, PostgreSQL no busy timeout: asking is an error, not
    silently ignored; so is a pool size that is not a count."""
    sqlite_url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(InvalidInput, match="no schemas"):
        SQLThreadStore(sqlite_url, schema="s")
    with pytest.raises(InvalidInput, match="pool_size is not an option of the sqlite"):
        SQLThreadStore(sqlite_url, pool_size=3)
    with pytest.raises(InvalidInput, match="busy_timeout_ms"):
        SQLThreadStore(PG_URL, busy_timeout_ms=10)
    for bad in (-1, 2.5, True, "5"):
        with pytest.raises(InvalidInput, match="pool_size"):
            SQLThreadStore(PG_URL, pool_size=bad)


def test_schema_and_prefix_keep_stores_apart(admin: psycopg.Connection[Any]) -> None:
    """Stores in one schema with different prefixes, and a schema named by a reserved word
    (quoted by the dialect), hold separate threads in their own tables."""
    schema = "user"  # reserved: only works if quoted
    admin.execute('DROP SCHEMA IF EXISTS "user" CASCADE')
    try:
        a = memfold.open_store(PG_URL, schema=schema, table_prefix="a_")
        b = memfold.open_store(PG_URL, schema=schema, table_prefix="b_")
        a.append("t", user("in a"))
        b.append("t", [user("in b"), user("again")])
        assert [m.content for m in a.load("t")] == ["in a"]
        assert b.count("t") == 2
        tables = {
            name
            for (name,) in admin.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'user'"
            )
        }
        assert {"a_messages", "a_threads", "b_messages", "b_threads"} <= tables
        a.close()
        b.close()
    finally:
        admin.execute('DROP SCHEMA IF EXISTS "user" CASCADE')


def test_engines_you_pass_in_are_used_and_left_open(schema: str) -> None:
    """A store on your Engine and AsyncEngine runs on them, and close() leaves them usable."""
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    aengine = create_async_engine(url)
    store = SQLThreadStore(engine, async_engine=aengine, schema=schema)
    store.setup()

    async def use_async() -> int:
        await store.aappend("t", user("async"))
        count = await store.acount("t")
        await store.aclose()
        async with aengine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        await aengine.dispose()
        return count

    store.append("t", user("sync"))
    assert asyncio.run(use_async()) == 2
    store.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_an_async_engine_alone_opens_a_store(schema: str) -> None:
    """SQLThreadStore(async_engine) serves async calls on it and sync calls on its URL."""
    aengine = create_async_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    store = SQLThreadStore(aengine, schema=schema)
    store.setup()
    store.append("t", user("sync"))

    async def use() -> list[str]:
        await store.aappend("t", user("async"))
        loaded = [str(m.content) for m in await store.aload("t")]
        await aengine.dispose()
        return loaded

    assert asyncio.run(use()) == ["sync", "async"]
    store.close()


def test_an_unreachable_server_is_backend_unavailable() -> None:
    """A server that refuses connections raises BackendUnavailable saying what to check."""
    url = re.sub(r"@[^/]*/", "@127.0.0.1:1/", PG_URL)
    with pytest.raises(BackendUnavailable, match="running"):
        memfold.open_store(url, connect_timeout=2)


def test_a_store_without_setup_says_to_call_setup(schema: str) -> None:
    """Using a PostgreSQL store before its schema exists says to call setup()."""
    store = memfold.open_store(PG_URL, schema=schema, setup=False)
    with pytest.raises(BackendUnavailable, match=r"setup\(\)"):
        store.load("t")
    assert store.setup() == store.setup() == migrations.STEPS[-1].version
    assert store.load("t") == []
    store.close()


def test_a_memory_table_opens_by_url_alone_so_the_cli_erases_it(schema: str) -> None:
    """A memory store opened without a vector length reads an existing table's; so
    ``memfold erase`` by URL erases the memories too (it skipped them, reporting success)."""
    from memfold.memories import open_memory_store
    from tests.unit.test_cli import run

    with pytest.raises(InvalidInput, match="vector length"):
        open_memory_store(PG_URL, schema=schema)  # no table yet: nothing to read it from
    with open_memory_store(PG_URL, schema=schema, dimensions=8) as made:
        made.put(("acme", "ann"), "ann prefers tea")
        made.put(("acme", "bob"), "bob prefers coffee")
    with open_memory_store(PG_URL, schema=schema) as opened:
        assert opened.dimensions == 8
        assert opened.count(("acme",)) == 2
    result = run("erase", "--url", f"{PG_URL}?schema={schema}", "--tenant", "acme", "--user", "ann")
    assert result.exit_code == 0, result.output
    assert "memories: 1" in result.output
    with open_memory_store(PG_URL, schema=schema) as after:
        assert [r.text for r in after.list_records(("acme",))] == ["bob prefers coffee"]


# Dropped and idle-killed connections.


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_terminated_connections_are_replaced(
    admin: psycopg.Connection[Any], schema: str, use_async: bool
) -> None:
    """After pg_terminate_backend kills every connection of the store, reads and writes go on
    on new connections, and each write lands exactly once."""
    store = memfold.open_store(named(schema), schema=schema)

    async def scenario() -> None:
        api = store if not use_async else None
        for round_ in range(3):
            if api is not None:
                api.append("t", user(f"m{round_}"))
                api.append("t", [user("x"), user("y")])
            else:
                await store.aappend("t", user(f"m{round_}"))
                await store.aappend("t", [user("x"), user("y")])
            assert kill_connections(admin, schema)
            count = store.count("t") if api else await store.acount("t")
            assert count == 3 * (round_ + 1)
            assert kill_connections(admin, schema)
        loaded = store.load("t") if api else await store.aload("t")
        assert [m.content for m in loaded][::3] == ["m0", "m1", "m2"]
        if not api:
            await store.aclose()

    asyncio.run(scenario())
    store.close()


def test_a_connection_lost_mid_operation_is_retried_only_when_safe(
    admin: psycopg.Connection[Any], schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the liveness check misses a dead connection: reads and transactions (which never
    reached COMMIT) run once more; a one-statement write is reported as maybe stored."""
    store = memfold.open_store(named(schema), schema=schema)
    store.append("t", user("first"))
    monkeypatch.setattr(pg_driver, "_alive", lambda conn: True)
    kill_connections(admin, schema)
    assert store.count("t") == 1
    kill_connections(admin, schema)
    store.append("t", [user("two"), user("three")])
    assert store.count("t") == 3
    kill_connections(admin, schema)
    with pytest.raises(BackendUnavailable, match="may or may not be stored"):
        store.append("t", user("unknown"))
    assert store.count("t") == 3  # it was not stored: the server was gone before it arrived
    store.append("t", user("after"))
    assert [m.content for m in store.load("t")][-1] == "after"
    store.close()


def test_idle_killed_connections_recover(schema: str) -> None:
    """Connections the server closes for idling (idle_session_timeout) are replaced."""
    url = PG_URL + ("&" if "?" in PG_URL else "?") + "options=-c%20idle_session_timeout%3D200"
    store = memfold.open_store(url, schema=schema)
    for i in range(3):
        store.append("t", user(str(i)))
        time.sleep(0.5)
    assert [m.content for m in store.load("t")] == ["0", "1", "2"]
    store.close()


# PgBouncer (transaction mode) safety.


def test_no_session_state_outlives_a_transaction(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statement memfold sends is plain SQL: no SET, PREPARE, LISTEN or session lock;
    nothing is prepared server-side; your engine's connections get their settings back."""
    seen: list[str] = []

    def recording(cursor: type[Any]) -> type[Any]:
        class Recording(cursor):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                seen.append(str(query))
                return super().execute(query, params, **kwargs)

            def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
                seen.append(str(query))
                super().executemany(query, params_seq, **kwargs)

        return Recording

    Recording = recording(psycopg.Cursor)
    monkeypatch.setattr(psycopg, "RawCursor", recording(psycopg.RawCursor))  # memfold's own

    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, pool_size=1, max_overflow=0)  # psycopg's default prepare_threshold

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor_factory = Recording

    store = SQLThreadStore(engine, schema=schema)
    store.setup()
    for i in range(12):  # past psycopg's prepare threshold of 5
        stored = store.append("t", [user(f"hello {i}"), user("x")])
        store.append("t", user(f"one {i}"))
        store.load("t", last=3)
        store.search("hello")
        store.update_messages("t", [user("edited", id=stored[1].id)])
        store.delete_messages("t", [stored[0].id])
    assert store.count("t") == 24
    kinds = {q.split(None, 1)[0].upper() for q in seen}
    assert kinds <= {"BEGIN", "COMMIT", "SELECT", "INSERT", "UPDATE", "DELETE", "WITH",
                     "CREATE", "DROP", "ALTER", "DO"}, kinds  # fmt: skip
    assert all("pg_advisory_lock" not in q for q in seen)
    assert any("pg_advisory_xact_lock" in q for q in seen)
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        assert driver.prepare_threshold == 5
        assert driver.autocommit is False
        assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar() == 0
        locks = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert conn.execute(text(locks)).scalar() == 0
        conn.rollback()
    store.close()
    engine.dispose()


async def test_prepared_statements_are_opt_in(tmp_path: Any) -> None:
    """With ``prepared_statements`` (a keyword, or the URL option) the server prepares the
    statements of a checkpoint store's connections, and its checkpoints read back as a default
    store's do, sync and async; a default store prepares nothing; SQLite and a non-flag value
    are refused."""
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}prepared_statements=true"
    schemas = [new_schema(), new_schema()]
    prepared = open_checkpoint_store(url, schema=schemas[0], pool_size=1, max_overflow=0)
    plain = open_checkpoint_store(PG_URL, schema=schemas[1], pool_size=1, max_overflow=0)
    try:
        read = []
        for store in (prepared, plain):
            for i in range(1, 8):
                parent = None if i == 1 else cid(i - 1)
                values = {"m": messages(i)}
                if i % 2:
                    store.put("t", cid(i), BODY, parent_id=parent, versions={"m": i}, values=values)
                else:
                    await store.aput(
                        "t", cid(i), BODY, parent_id=parent, versions={"m": i}, values=values
                    )
                write = PendingWrite("task", 0, "m", Blob("json", msg(i)))
                store.put_writes("t", cid(i), [write])
            found = [store.get("t"), await store.aget("t", checkpoint_id=cid(3))]
            found += await store.alist_checkpoints("t")
            read.append([(c.checkpoint_id, c.parent_id, c.values, c.writes) for c in found if c])
        assert len(read[0]) == 9
        assert read[0] == read[1]
        counts = []
        for store in (prepared, plain):
            with store.engine.connect() as conn:  # type: ignore[attr-defined]
                query = text("SELECT count(*) FROM pg_prepared_statements")
                counts.append(conn.execute(query).scalar())
        assert counts[0] > 3
        assert counts[1] == 0
    finally:
        for store in (prepared, plain):
            await store.aclose()
            drop_checkpoint_store(store)
    with pytest.raises(InvalidInput, match="prepared_statements is not an option of the sqlite"):
        open_checkpoint_store(f"sqlite:///{tmp_path}/c.db", prepared_statements=True)
    with pytest.raises(InvalidInput, match="prepared_statements must be True or False"):
        open_checkpoint_store(PG_URL, prepared_statements="yes")


def _setup_in_process(url: str, schema: str, barrier: Any, results: Any) -> None:
    store = SQLThreadStore(url, schema=schema)
    barrier.wait(30)
    results.put(store.setup())
    store.close()


def test_concurrent_setup_from_processes_is_safe(
    admin: psycopg.Connection[Any], schema: str
) -> None:
    """Four processes running setup() on a new schema at the same moment all succeed, and
    each schema step is applied once."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_setup_in_process, args=(PG_URL, schema, barrier, results))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    latest = migrations.STEPS[-1].version
    assert sorted(results.get(timeout=5) for _ in procs) == [latest] * 4
    rows = admin.execute(
        sql.SQL("SELECT component, version FROM {}.memfold_schema_versions").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    assert sorted(rows) == [("threads", v) for v in range(1, latest + 1)]


# Search and text.


TEXTS = [
    "visit example.com today",
    "foo_bar and foo-bar",
    "Café ÉCOLE naïve",
    "日本語のテキスト and ελληνικά",
    "version 1.5 or v2, 3rd",
    "x" * 300 + " long",
    "drop table; --",
    "tab\tnew\nline",
    "NUL\x00separated",
]
QUERIES = ["example", "example.com", "com today", "foo_bar", "bar", "foo", "café", "école",
           "NAÏVE", "日本語のテキスト", "ελληνικά", "1", "5", "1.5", "v2", "3rd", "x" * 300,
           "long", "table", "new line", "nul", "separated", "visit sushi"]  # fmt: skip


def test_search_matches_the_same_words_as_the_memory_backend(pg: BaseThreadStore) -> None:
    """For tricky text (hosts, _ and -, accents, scripts, numbers, long words, NUL), every
    query finds exactly the messages it finds on the memory backend."""
    memory = memfold.open_store("memory://")
    for i, content in enumerate(TEXTS):
        message = user(content, id=f"m{i}")
        pg.append("t", message)
        memory.append("t", message)
    for query in QUERIES:
        expected = {h.message.id for h in memory.search(query, limit=100)}
        assert {h.message.id for h in pg.search(query, limit=100)} == expected, query
        assert {h.message.id for h in pg.search(query, thread_id="t")} == expected, query


def test_hits_rank_messages_with_fewer_other_words_first(pg: BaseThreadStore) -> None:
    """Of messages holding every query word, the one with fewer other words ranks first."""
    pg.append("t", [user("pizza " + "filler " * 20 + "words " * 5), user("pizza tonight")])
    hits = pg.search("pizza")
    assert len(hits) == 2
    assert hits[0].message.content == "pizza tonight"
    assert hits[0].score > hits[1].score


def test_search_uses_the_gin_index(pg: BaseThreadStore, admin: psycopg.Connection[Any]) -> None:
    """The full-text query is answered from the GIN index over the stored words."""
    assert isinstance(pg, SQLThreadStore)
    pg.append("t", [user(f"word{i} common") for i in range(3000)])
    table = sql.Identifier(pg.tables.schema or "", pg.tables.messages.name)
    admin.execute(sql.SQL("ANALYZE {}").format(table))
    compiled = pg._plans._fts_search[False].compile(dialect=pg.engine.dialect)
    params = {"match": "'word7'", "k_tenant": "default", "limit": 10}
    explained = admin.execute("EXPLAIN " + compiled.string, params).fetchall()
    plan = "\n".join(row[0] for row in explained)
    assert "memfold_messages_words" in plan, plan


def test_the_last_messages_are_read_from_the_end_of_the_index(
    pg: BaseThreadStore, admin: psycopg.Connection[Any]
) -> None:
    """Reading the last few messages (before a message or not) touches a few pages, not the
    whole thread, even on a table the server has no statistics for yet: as one statement the
    planner would guess a few rows for the thread and scan and sort all of them."""
    assert isinstance(pg, SQLThreadStore)
    stored = pg.append("t", [user(f"message {i} " + "word " * 20) for i in range(3000)])
    for before in (None, stored[-10].id):
        compiled = pg._plans._load[True, before is not None].compile(dialect=pg.engine.dialect)
        params = {"k_tenant": "default", "k_thread": "t", "before": before, "last": 20}
        for _ in range(8):  # past the plan cache's first custom plans
            admin.execute(compiled.string, params)
        query = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + compiled.string
        plan = admin.execute(query, params).fetchone()[0][0]["Plan"]  # type: ignore[index]
        pages = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
        assert pages < 20, plan
    assert pg.load("t", last=20) == stored[-20:]
    assert pg.load("t", before=stored[-10].id, last=20) == stored[-30:-10]


def test_plain_ascii_text_is_indexed_from_the_body(
    pg: BaseThreadStore, admin: psycopg.Connection[Any]
) -> None:
    """Plain ASCII text keeps no copy of its words (the index reads the body); other text
    does; both are found by their words."""
    assert isinstance(pg, SQLThreadStore)
    stored = pg.append("t", [user("Ship it to 10 Main St."), user("Café près d'ici")])
    table = sql.Identifier(pg.tables.schema or "", pg.tables.messages.name)
    copies = admin.execute(
        sql.SQL("SELECT message_id, search_text FROM {} ORDER BY seq").format(table)
    ).fetchall()
    assert copies == [(stored[0].id, None), (stored[1].id, "café près d ici")]
    assert [h.message for h in pg.search("main ship")] == stored[:1]
    assert [h.message for h in pg.search("PRÈS")] == stored[1:]


def test_huge_messages_are_stored_and_found(pg: BaseThreadStore) -> None:
    """A message with megabytes of distinct words (more than a tsvector holds) is stored
    exactly; its early words are searchable."""
    words = " ".join(f"w{i}x" for i in range(400_000))
    [stored] = pg.append("t", user(words))
    assert pg.load("t")[0].content == words
    assert [h.message.id for h in pg.search("w0x w1000x")] == [stored.id]


def test_nul_bytes_are_stored_exactly_everywhere(pg: BaseThreadStore) -> None:
    """NUL in content, parts, tool arguments, metadata and thread metadata round-trips, and
    the words on both sides of it are searchable (PostgreSQL text itself cannot hold NUL)."""
    message = Message(
        role="assistant",
        content=(Part(type="text", text="left\x00right"),),
        tool_calls=(ToolCall(id="c\x001", name="n\x00", arguments={"k\x00": "v\x00"}),),
        metadata={"m\x00": ["\x00"]},
    )
    [stored] = pg.append("t", message)
    assert pg.load("t") == [stored]
    info = pg.set_thread_metadata("t", {"title\x00": "a\x00b"})
    assert info.metadata == {"title\x00": "a\x00b"}
    assert pg.get_thread("t").metadata == {"title\x00": "a\x00b"}
    assert [h.message.id for h in pg.search("left right")] == [stored.id]
    edited = Message(role="user", content="new\x00text", id=stored.id)
    pg.update_messages("t", [edited])
    assert pg.load("t")[0].content == "new\x00text"
    assert pg.search("left") == []


# Concurrency and event loops.


def test_concurrent_writers_keep_counts_exact(pg: BaseThreadStore) -> None:
    """Appends, deletes of the same ids from two threads, and a replace, all racing on one
    thread, leave the message count equal to the messages stored."""
    seeded = pg.append("t", [user(f"seed {i}") for i in range(40)])
    errors: list[BaseException] = []

    def run(work: Any) -> None:
        try:
            work()
        except BaseException as exc:  # reported below
            errors.append(exc)

    def appender(name: str) -> None:
        for i in range(25):
            pg.append("t", user(f"{name} {i}"))

    def deleter() -> None:
        for m in seeded:
            pg.delete_messages("t", [str(m.id)])

    def replacer() -> None:
        time.sleep(0.05)
        pg.replace("t", [user("replaced")])

    work = [lambda: appender("a"), lambda: appender("b"), deleter, deleter, replacer]
    workers = [threading.Thread(target=run, args=(w,)) for w in work]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    assert pg.count("t") == len(pg.load("t")) == pg.get_thread("t").message_count
    assert not {m.id for m in pg.load("t")} & {m.id for m in seeded}


def test_a_store_survives_its_event_loops(schema: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each asyncio.run, and a loop in another thread, gets a working store; close() then
    leaves no open connection behind and logs no error."""
    store = memfold.open_store(PG_URL, schema=schema)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for i in range(3):
            asyncio.run(store.aappend("t", user(str(i))))
        results: list[int] = []
        worker = threading.Thread(target=lambda: results.append(asyncio.run(store.acount("t"))))
        worker.start()
        worker.join()
        store.close()
        gc.collect()
    assert results == [3]
    assert [m.content for m in store.load("t")] == ["0", "1", "2"]
    store.close()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


# Checkpoint reads.


def test_a_checkpoint_is_read_in_one_statement(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint this store does not remember writing (the newest, or by id) is read whole
    in one statement: its writes, a delta chain, a channel with no value, and a fork's own
    rows; a version the statement cannot name (non-ASCII text) costs a second query, and
    still reads back."""
    writer = postgres_checkpoint_store()
    schema = writer.tables.schema  # type: ignore[attr-defined]
    store = open_checkpoint_store(PG_URL, schema=schema, setup=False)
    try:
        for i in range(5):
            writer.put("t", cid(i), BODY, parent_id=cid(i - 1) if i else None,
                       versions={"messages": i + 1, "none": 1}, values={
                           "messages": messages(i + 1), **({} if i else {"none": None}),
                       })  # fmt: skip
        fork = SequenceBlob("json", (*messages(2).items, msg(99)))
        writer.put("t", cid(9), BODY, parent_id=cid(1), versions={"messages": 3, "none": 1},
                   values={"messages": fork})  # fmt: skip
        write = PendingWrite("task", 0, "messages", Blob("json", b"[1]"))
        writer.put_writes("t", cid(4), [write])
        writer.put("u", cid(0), BODY, versions={"note": "vé"}, values={"note": Blob("json", b"1")})
        seen = statements(store, monkeypatch)
        newest = store.get("t")
        assert newest is not None
        assert newest.checkpoint_id == cid(9)
        assert newest.values == {"messages": fork}
        older = store.get("t", checkpoint_id=cid(4))
        assert older is not None
        assert older.values == {"messages": messages(5)}
        assert older.writes == (write,)
        assert len(seen) == 2  # one statement a read
        assert store.get("t", checkpoint_id=cid(8)) is None
        assert len(seen) == 3
        odd = store.get("u")
        assert odd is not None
        assert odd.values == {"note": Blob("json", b"1")}
        assert len(seen) == 5
    finally:
        store.close()
        writer.close()
        drop_checkpoint_store(writer)


@pytest.mark.parametrize("n", [1, 8, 9, 20])
def test_puts_and_writes_of_any_size_read_back(n: int) -> None:
    """A put's value rows and a task's pending writes are sent one parameter per value when
    few and as arrays when many: either way a first put (the full form), the next one (the
    fast form) and new and replacing writes read back exactly."""
    store = postgres_checkpoint_store()
    try:
        channels = [f"ch{i}" for i in range(n)]
        for step in range(2):
            store.put("t", cid(step), BODY, parent_id=cid(0) if step else None,
                      versions={ch: step + 1 for ch in channels},
                      values={ch: Blob("json", b"%d" % (i + 10 * step))
                              for i, ch in enumerate(channels)})  # fmt: skip
        kept = [PendingWrite("task", i, "messages", Blob("json", b"%d" % i)) for i in range(n)]
        special = [PendingWrite("task", -1 - i, "error", Blob("json", b"0")) for i in range(n)]
        store.put_writes("t", cid(1), [*kept, *special])
        replaced = [
            PendingWrite("task", -1 - i, "error", Blob("json", b"%d" % i)) for i in range(n)
        ]
        store.put_writes("t", cid(1), replaced)
        found = store.get("t")
        assert found is not None
        assert found.values == {ch: Blob("json", b"%d" % (i + 10)) for i, ch in enumerate(channels)}
        assert sorted(found.writes, key=lambda w: w.idx) == sorted(
            [*kept, *replaced], key=lambda w: w.idx
        )
    finally:
        store.close()
        drop_checkpoint_store(store)


def test_a_checkpoint_read_does_not_depend_on_string_escaping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one-statement read of a checkpoint with a channel that has no value holds on a
    server whose ``standard_conforming_strings`` is off (backslashes in plain literals are
    escapes there)."""
    writer = postgres_checkpoint_store()
    schema = writer.tables.schema  # type: ignore[attr-defined]
    url = f"{PG_URL}?options=-cstandard_conforming_strings%3Doff"
    reader = open_checkpoint_store(url, schema=schema, setup=False)
    try:
        writer.put("t", cid(0), BODY, versions={"a": 1, "none": 1},
                   values={"a": Blob("json", b"1"), "none": None})  # fmt: skip
        seen = statements(reader, monkeypatch)
        found = reader.get("t")
        assert found is not None
        assert found.values == {"a": Blob("json", b"1")}
        assert len(seen) == 1
    finally:
        reader.close()
        writer.close()
        drop_checkpoint_store(writer)


# Puts as calls of server-side functions.


def put_functions(admin: psycopg.Connection[Any], schema: str, kind: str = "put") -> dict[str, int]:
    """The put (or other ``kind``) functions in ``schema``: name -> argument count."""
    rows = admin.execute(
        "SELECT p.proname, p.pronargs FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname LIKE %s",
        (schema, f"memfold\\_{kind}\\_%"),
    ).fetchall()
    return dict(rows)


def made_again(admin: psycopg.Connection[Any], schema: str, made: dict[str, int]) -> bool:
    """Whether, after the functions ``made`` were dropped, the puts since made one of them again
    (that of the fast put: the only shape that ran since)."""
    again = put_functions(admin, schema)
    return len(again) == 1 and again.items() <= made.items()


def drop_put_functions(admin: psycopg.Connection[Any], schema: str, kind: str = "put") -> None:
    for name in put_functions(admin, schema, kind):
        admin.execute(sql.SQL("DROP FUNCTION {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name)))  # fmt: skip


def put_steps(store: Any, thread: str, steps: range) -> None:
    """Puts continuing one thread (the second on, a store's fast put), each with one value."""
    for i in steps:
        parent = cid(i - 1) if i else None
        store.put(thread, cid(i), BODY, parent_id=parent, versions={"m": i + 1},
                  values={"m": messages(i + 1)})  # fmt: skip


def test_puts_run_as_calls_of_server_side_functions(admin: psycopg.Connection[Any]) -> None:
    """A default store creates one function per shape of its put (another store on the schema
    reuses them), and checkpoints read back; a function dropped behind the stores' backs costs
    no put and is created again."""
    store = postgres_checkpoint_store()
    schema = store.tables.schema  # type: ignore[attr-defined]
    other = open_checkpoint_store(PG_URL, schema=schema, setup=False)
    try:
        put_steps(store, "t", range(4))
        made = put_functions(admin, schema)
        assert len(made) == 2  # a thread's first put (under its row lock), and the fast put
        assert min(made.values()) > 10  # the statements' parameters
        put_steps(other, "u", range(4))
        assert put_functions(admin, schema) == made
        drop_put_functions(admin, schema)
        put_steps(store, "t", range(4, 5))  # the call fails; the put runs as a statement
        assert put_functions(admin, schema) == {}
        put_steps(store, "t", range(5, 6))
        assert made_again(admin, schema, made)
        for thread, last in (("t", 5), ("u", 3)):
            found = other.get(thread)
            assert found is not None
            assert found.checkpoint_id == cid(last)
            assert found.values == {"m": messages(last + 1)}
    finally:
        other.close()
        store.close()
        drop_checkpoint_store(store)


async def test_async_puts_create_and_call_the_functions_too(
    admin: psycopg.Connection[Any],
) -> None:
    """The async put path creates the function, calls it (so it is made again after a
    drop), and reads back the same checkpoints."""
    store = postgres_checkpoint_store()
    schema = store.tables.schema  # type: ignore[attr-defined]

    async def aput_steps(steps: range) -> None:
        for i in steps:
            await store.aput("t", cid(i), BODY, parent_id=cid(i - 1) if i else None,
                             versions={"m": i + 1}, values={"m": messages(i + 1)})  # fmt: skip

    try:
        await aput_steps(range(4))
        made = put_functions(admin, schema)
        assert len(made) == 2
        drop_put_functions(admin, schema)
        await aput_steps(range(4, 5))  # the call fails; the put runs as a statement
        assert put_functions(admin, schema) == {}
        await aput_steps(range(5, 6))
        assert made_again(admin, schema, made)
        found = await store.aget("t")
        assert found is not None
        assert found.values == {"m": messages(6)}
    finally:
        await store.aclose()
        drop_checkpoint_store(store)


def test_stores_creating_a_function_at_once_make_one(admin: psycopg.Connection[Any]) -> None:
    """Four stores (own pools) making their first fast put at the same moment create the
    shape's function once, every put is stored, and every store calls the function (none fell
    back to plain statements: each makes it again after a drop)."""
    first = postgres_checkpoint_store()
    schema = first.tables.schema  # type: ignore[attr-defined]
    stores = [first, *(open_checkpoint_store(PG_URL, schema=schema, setup=False) for _ in range(3))]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            put_steps(stores[n], f"t{n}", range(1))
            barrier.wait(10)
            put_steps(stores[n], f"t{n}", range(1, 3))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(stores))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        made = put_functions(admin, schema)
        assert len(made) == 2
        for n in range(len(stores)):
            found = first.get(f"t{n}")
            assert found is not None
            assert found.checkpoint_id == cid(2)
        for n, store in enumerate(stores):
            drop_put_functions(admin, schema)
            put_steps(store, f"t{n}", range(3, 5))  # a failed call, then a new function
            assert made_again(admin, schema, made)
    finally:
        for store in stores:
            store.close()
        drop_checkpoint_store(first)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_reads_run_as_calls_of_server_side_functions(
    admin: psycopg.Connection[Any], use_async: bool
) -> None:
    """A store reading checkpoints another store wrote (the newest, one by id, a page of the
    list, a channel's history) creates one function per read shape after the shape's first
    plain run, and reads the same checkpoints through them; functions dropped behind its back
    cost no read and are made again."""
    writer = postgres_checkpoint_store()
    schema = writer.tables.schema  # type: ignore[attr-defined]
    reader = open_checkpoint_store(PG_URL, schema=schema, setup=False)

    async def read_all() -> None:
        for _ in range(2):
            for checkpoint_id, size in ((None, 4), (cid(1), 2)):
                if use_async:
                    found = await reader.aget("t", checkpoint_id=checkpoint_id)
                else:
                    found = reader.get("t", checkpoint_id=checkpoint_id)
                assert found is not None
                assert found.checkpoint_id == (checkpoint_id or cid(3))
                assert found.values == {"m": messages(size)}
                assert [w.value for w in found.writes] == [Blob("json", b"1")]
            listed = (
                await reader.alist_checkpoints("t", before=cid(3), limit=2)
                if use_async
                else reader.list_checkpoints("t", before=cid(3), limit=2)
            )
            assert [(c.checkpoint_id, c.values) for c in listed] == [
                (cid(2), {"m": messages(3)}),
                (cid(1), {"m": messages(2)}),
            ]
            channels = ["m", "w"]
            history = (
                await reader.aread_channel_history("t", channels, checkpoint_id=cid(3))
                if use_async
                else reader.read_channel_history("t", channels, checkpoint_id=cid(3))
            )
            assert history is not None
            assert history["m"] == ChannelHistory((), messages(3))
            assert [w.value for w in history["w"].writes] == [Blob("json", b"1")]
            assert history["w"].seed is None

    async def scenario() -> None:
        put_steps(writer, "t", range(4))
        for i in (1, 3):
            writer.put_writes("t", cid(i), [PendingWrite("task", 0, "w", Blob("json", b"1"))])
        writers = put_functions(admin, schema, "get")  # value rows the first put read by key
        assert len(writers) == 1
        await read_all()
        # a get of the newest and one by id (each with its value rows), the value rows a list
        # page reads, a page of ancestors with their writes; and a list page
        made = {
            kind: {k: v for k, v in put_functions(admin, schema, kind).items() if k not in writers}
            for kind in ("get", "list")
        }
        assert [len(made["get"]), len(made["list"])] == [4, 1]
        for kind in made:
            drop_put_functions(admin, schema, kind)
        await read_all()  # each call fails, runs plain, and the next makes the function again
        assert {kind: put_functions(admin, schema, kind) for kind in made} == made
        if use_async:
            await reader.aclose()

    try:
        asyncio.run(scenario())
    finally:
        reader.close()
        writer.close()
        drop_checkpoint_store(writer)


def test_stores_with_row_level_security_call_functions_too(admin: psycopg.Connection[Any]) -> None:
    """With ``row_level_security`` every operation is a transaction of its own; a store still
    makes its functions (each before an operation's transaction) and works through them."""
    store = postgres_checkpoint_store(row_level_security=True)
    schema = store.tables.schema  # type: ignore[attr-defined]
    try:
        put_steps(store, "t", range(4))
        for _ in range(2):
            found = store.get("t", checkpoint_id=cid(1))
            assert found is not None
            assert found.values == {"m": messages(2)}
        made = put_functions(admin, schema)
        assert len(made) == 2
        assert put_functions(admin, schema, "get")
        drop_put_functions(admin, schema)
        put_steps(store, "t", range(4, 6))  # a failed call rolls back and reruns; then a new one
        assert made_again(admin, schema, made)
    finally:
        store.close()
        drop_checkpoint_store(store)


def test_a_changed_result_type_gets_a_function_of_its_own(admin: psycopg.Connection[Any]) -> None:
    """When a column a read returns changes type under a running store (as a schema step may
    do), the store's stale function fails, the read runs plain, and the next makes a function
    named for the new types, which a new store finds; no read fails."""
    writer = postgres_checkpoint_store()
    schema = writer.tables.schema  # type: ignore[attr-defined]
    reader = open_checkpoint_store(PG_URL, schema=schema, setup=False)
    fresh = open_checkpoint_store(PG_URL, schema=schema, setup=False)

    def read(store: Any) -> None:
        for _ in range(3):
            found = store.get("t", checkpoint_id=cid(2))
            assert found is not None
            assert found.values == {"m": messages(3)}
            assert [(w.idx, w.value) for w in found.writes] == [(0, Blob("json", b"1"))]

    try:
        put_steps(writer, "t", range(3))
        writer.put_writes("t", cid(2), [PendingWrite("task", 0, "w", Blob("json", b"1"))])
        read(reader)
        before = put_functions(admin, schema, "get")
        assert before
        admin.execute(sql.SQL("ALTER TABLE {}.memfold_cp_writes ALTER COLUMN idx TYPE bigint")
                      .format(sql.Identifier(schema)))  # fmt: skip
        read(reader)
        after = put_functions(admin, schema, "get")
        assert len(after) == len(before) + 1  # the read's, for the new types
        assert set(before) < set(after)
        read(fresh)
        assert put_functions(admin, schema, "get") == after
    finally:
        fresh.close()
        reader.close()
        writer.close()
        drop_checkpoint_store(writer)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_connection_lost_while_making_a_function_costs_no_put(
    admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, use_async: bool
) -> None:
    """A dead connection the liveness check missed, found when a put first makes its function,
    is replaced and the put runs once more (nothing had been stored): it is stored, the
    function made, and no "may or may not be stored" error is raised."""
    schema = f"memfold_test_{uuid.uuid4().hex}"
    store = open_checkpoint_store(named(schema), schema=schema)

    async def put(i: int) -> None:
        if use_async:
            await store.aput("t", cid(i), BODY, parent_id=cid(i - 1) if i else None,
                             versions={"m": i + 1}, values={"m": messages(i + 1)})  # fmt: skip
        else:
            put_steps(store, "t", range(i, i + 1))

    async def scenario() -> None:
        await put(0)  # a thread's first put, inside a transaction, runs plain
        await put(1)  # its function is made first; the first fast put runs plain
        assert len(put_functions(admin, schema)) == 1
        monkeypatch.setattr(pg_driver, "_alive", lambda conn: True)
        assert kill_connections(admin, schema)
        await put(2)  # the fast put's function is made first, on the dead connection
        assert len(put_functions(admin, schema)) == 2
        found = await store.aget("t") if use_async else store.get("t")
        assert found is not None
        assert found.checkpoint_id == cid(2)
        assert found.values == {"m": messages(3)}
        if use_async:
            await store.aclose()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
        drop_checkpoint_store(store)


def test_without_create_privilege_or_with_prepared_statements_puts_stay_statements(
    admin: psycopg.Connection[Any], tmp_path: Any
) -> None:
    """A role that may not create in the schema stores its puts as plain statements, as do a
    store with ``prepared_statements`` (its server plans them once already) and one with
    ``server_functions=False``; SQLite and a non-flag value are refused."""
    owner = postgres_checkpoint_store()
    schema = owner.tables.schema  # type: ignore[attr-defined]
    role = f"memfold_test_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(schema)
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} "
                              "TO {}").format(ident, sql.Identifier(role)))  # fmt: skip
        url = re.sub(r"//[^@/]*@", f"//{role}@", PG_URL) if "@" in PG_URL else PG_URL
        limited = open_checkpoint_store(url, schema=schema, setup=False)
        prepared = open_checkpoint_store(PG_URL, schema=schema, setup=False,
                                         prepared_statements=True)  # fmt: skip
        plain = open_checkpoint_store(PG_URL, schema=schema, setup=False, server_functions=False)
        try:
            put_steps(limited, "limited", range(3))
            put_steps(prepared, "prepared", range(3))
            put_steps(plain, "plain", range(3))
            assert put_functions(admin, schema) == {}
            for thread in ("limited", "prepared", "plain"):
                found = owner.get(thread)
                assert found is not None
                assert found.values == {"m": messages(3)}
        finally:
            limited.close()
            prepared.close()
            plain.close()
    finally:
        owner.close()
        drop_checkpoint_store(owner)
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    with pytest.raises(InvalidInput, match="server_functions is not an option of the sqlite"):
        open_checkpoint_store(f"sqlite:///{tmp_path}/c.db", server_functions=True)
    with pytest.raises(InvalidInput, match="server_functions must be True or False"):
        open_checkpoint_store(PG_URL, server_functions="yes")
