"""Store URLs keep a driver's query options and parse memfold's own, for every store kind."""

from __future__ import annotations

import sqlite3
import uuid
import warnings
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from memfold import InvalidInput, open_checkpoint_store, open_memory_store, open_store
from memfold.checkpoints import BaseCheckpointStore
from memfold.memories import BaseMemoryStore
from memfold.model import Message
from memfold.open import open_stores
from memfold.stores import BaseThreadStore
from memfold.urls import split_options
from tests.support import PG_URL, REDIS_URL

KINDS = {"keep_last": int, "ratio": float}


def test_our_options_are_parsed_and_the_drivers_stay_in_the_url() -> None:
    """Known options are parsed and removed; the rest keep their order for the driver."""
    plain, ours = split_options(
        "postgresql://h/db?application_name=x&keep_last=3&sslmode=disable&ratio=0.5",
        KINDS,
        strict=False,
    )
    assert plain == "postgresql://h/db?application_name=x&sslmode=disable"
    assert ours == {"keep_last": 3, "ratio": 0.5}
    assert split_options("sqlite:///a.db", KINDS, strict=False) == ("sqlite:///a.db", {})


def test_strict_urls_refuse_unknown_options_and_bad_values() -> None:
    """A URL without a driver names the options it knows; a value that does not parse says so."""
    with pytest.raises(InvalidInput, match=r"unknown option 'colour'.*keep_last"):
        split_options("memory://?colour=red", KINDS, strict=True)
    with pytest.raises(InvalidInput, match=r"keep_last='many'.*not a number"):
        split_options("memory://?keep_last=many", KINDS, strict=False)


def test_every_store_kind_passes_driver_options_through() -> None:
    """A PostgreSQL or Redis URL may carry the driver's options next to memfold's own."""
    with open_store(f"{PG_URL}?application_name=memfold-url-test", setup=False) as threads:
        assert threads.capabilities.persistent
    with open_checkpoint_store(
        f"{PG_URL}?application_name=memfold-url-test&keep_last=5", setup=False
    ) as checkpoints:
        assert checkpoints.capabilities.persistent
    memories = open_memory_store(f"{REDIS_URL}?socket_timeout=5&capacity=10", setup=False)
    memories.close()
    with pytest.raises(InvalidInput, match="unknown option"):
        open_memory_store("memory://?socket_timeout=5")


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql", "redis"])
def test_one_url_gives_each_kind_its_own_options_and_no_driver_sees_the_others(
    backend: str, tmp_path: Path
) -> None:
    """A URL opened for every kind may hold options only one kind takes (a thread cap, a
    checkpoint delta policy, memory dimensions and capacity): that kind applies them, the
    others drop them before their driver (no warning, no refusal), and every kind opens."""
    common = "snapshot_every=3&dimensions=8&capacity=4&redact=default&keep_last=9"
    options: dict[str, str] = {}
    if backend == "memory":
        url = f"memory://?{common}&max_messages_per_thread=7"
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'all.db'}?{common}"
    elif backend == "redis":
        url = f"{REDIS_URL}?{common}&max_messages=7&compress_min_bytes=64"
        options["key_prefix"] = f"memfold-test:{uuid.uuid4().hex}:"
    else:
        url = f"{PG_URL}?{common}&application_name=memfold-url-test"
        options["schema"] = f"memfold_test_{uuid.uuid4().hex}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stores = open_stores(url, **options)
    try:
        threads, checkpoints, memories = stores
        assert isinstance(threads, BaseThreadStore)
        assert isinstance(checkpoints, BaseCheckpointStore)
        assert isinstance(memories, BaseMemoryStore)
        assert threads.redactor is not None
        thread_cap = 7 if backend in ("memory", "redis") else 9  # the thread cap wins
        assert threads.retention.keep_last == thread_cap
        assert checkpoints.retention.keep_last == memories.retention.keep_last == 9
        assert checkpoints.delta_policy.snapshot_every == 3
        assert (memories.dimensions, memories.capacity) == (8, 4)
        if backend == "memory":
            assert getattr(threads, "max_messages_per_thread", None) == 7
        if backend == "redis":
            assert getattr(threads, "max_messages", None) == 7
            assert getattr(checkpoints, "codec", None) is not None
    finally:
        for store in stores:
            store.close()
        _drop(backend, options)


def test_a_url_alone_reaches_any_schema_and_table_prefix() -> None:
    """``schema`` and ``table_prefix`` in a SQL URL place every kind's tables (as the CLI's
    ``--url`` needs); psycopg never sees them, and a keyword wins over the URL."""
    schema = f"memfold_test_{uuid.uuid4().hex}"
    url = f"{PG_URL}?schema={schema}&table_prefix=url_&dimensions=8"
    stores = open_stores(url)
    try:
        for store in stores:
            store.close()
        with psycopg.connect(PG_URL) as conn:
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (schema,),
                )
            }
        assert {"url_messages", "url_checkpoints", "url_memories"} <= tables
        assert all(name.startswith("url_") for name in tables)
        with open_store(url, table_prefix="kw_") as threads:
            threads.append("t", [Message(role="user", content="hi")])
        with psycopg.connect(PG_URL) as conn:
            found = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "kw_messages"))
            ).fetchone()
        assert found == (1,)
    finally:
        _drop("postgresql", {"schema": schema})


def test_a_sqlite_url_takes_a_table_prefix_and_refuses_a_schema(tmp_path: Path) -> None:
    """SQLite reads ``table_prefix`` from the URL too, and has no schemas to put tables in."""
    path = tmp_path / "prefixed.db"
    with open_store(f"sqlite:///{path}?table_prefix=url_") as threads:
        threads.append("t", [Message(role="user", content="hi")])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM url_messages").fetchone() == (1,)
    with pytest.raises(InvalidInput, match="no schemas"):
        open_store(f"sqlite:///{path}?schema=elsewhere")


def test_an_option_the_driver_refuses_is_invalid_input_not_an_outage() -> None:
    """A query option psycopg does not know fails before any connection, as the caller's
    mistake (InvalidInput), never as an unreachable server (BackendUnavailable)."""
    with pytest.raises(InvalidInput, match=r"refused the URL.*colour"):
        open_store(f"{PG_URL}?colour=red")


def _drop(backend: str, options: dict[str, str]) -> None:
    """Delete the schema or the keys a test of ``backend`` made under ``options``."""
    if backend == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{options['key_prefix']}*"))
        if keys:
            client.delete(*keys)
        client.close()
    elif backend == "postgresql":
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(options["schema"])
                )
            )
