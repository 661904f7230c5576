"""Hostile URLs and options to every function that opens a store: each opens a working store or
raises a `memfold.errors` error, and a canary store beside it is unchanged. On PostgreSQL and
Redis, hostile schema names, table prefixes and key prefixes are refused or used verbatim as one
quoted identifier or key part, never spliced into SQL or a key pattern."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import memfold
from memfold import InvalidInput, Limits, MemfoldError, Message
from memfold.checkpoints import aopen_checkpoint_store, open_checkpoint_store
from memfold.encryption import Keyring
from memfold.journal import aopen_journal, open_journal
from memfold.memories import aopen_memory_store, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.redaction import Redactor
from memfold.retention import RetentionPolicy
from tests.reliability.fuzzing import FUZZ, FUZZ_SLOW, hostile_ids, hostile_text
from tests.support import PG_URL, REDIS_URL

OPENERS: dict[str, Callable[..., Any]] = {
    "open_store": memfold.open_store,
    "aopen_store": memfold.aopen_store,
    "open_stores": memfold.open.open_stores,
    "aopen_stores": memfold.open.aopen_stores,
    "open_checkpoint_store": open_checkpoint_store,
    "aopen_checkpoint_store": aopen_checkpoint_store,
    "open_memory_store": open_memory_store,
    "aopen_memory_store": aopen_memory_store,
    "open_journal": open_journal,
    "aopen_journal": aopen_journal,
    "create_memory": lambda url, **options: memfold.create_memory(url, db_path=url, **options),
}
"""Every opener, each called as ``opener(url, **options)``."""

OPTION_NAMES = [
    "setup", "limits", "keyring", "redactor", "require_tenant", "retention", "schema",
    "table_prefix", "key_prefix", "embedder", "dimensions", "busy_timeout_ms", "pool_size",
    "max_threads", "ttl_seconds", "keep_last", "delta_policy", "text_weight", "capacity",
]  # fmt: skip
"""Options some opener takes; each is given hostile values, and unknown names too."""

OPTION_VALUES = st.one_of(
    hostile_ids(),
    st.sampled_from(
        [True, False, -1, 0, 2**70, float("nan"), Limits(max_message_bytes=10), RetentionPolicy(),
         RetentionPolicy(keep_last=0), Keyring.generate("k1"), Redactor(), HashingEmbedder(8),
         "env", "off", "default"]
    ),
)  # fmt: skip


EMBEDDER = HashingEmbedder(8)


def urls() -> st.SearchStrategy[str]:
    """Hostile URLs: any text; odd schemes; SQLite files (in the working directory) and memory
    stores with hostile query options, including memfold's own option names."""
    text = hostile_text(max_size=12)
    option = st.sampled_from(["keep_last", "ttl_seconds", "require_tenant", "keyring", "redact",
                              "max_messages_per_thread", "mode", "x"]) | text  # fmt: skip
    query = st.lists(st.tuples(option, text), max_size=3).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    )
    return st.one_of(
        text,
        st.sampled_from(["memory://", "sqlite:///f.db", "memory", "sqlite", "chroma://", ""]),
        st.tuples(text, text).map(lambda p: f"{p[0]}://{p[1]}"),
        text.map(lambda s: "sqlite:///f-" + s.replace("/", "_")),
        st.tuples(st.sampled_from(["memory://", "sqlite:///f.db"]), query).map("?".join),
        st.sampled_from(["tiered+redis://", "tiered+memory://x?durable=memory://", "redis:"]),
    )


async def opened(name: str, url: Any, options: dict[str, Any]) -> list[Any]:
    """The stores ``OPENERS[name]`` opens, or its memfold error raised."""
    result = OPENERS[name](url, **options)
    if isinstance(result, Awaitable):
        result = await result
    return result if isinstance(result, list) else [result]


def close(stores: list[Any]) -> None:
    for store in stores:
        store.close()


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A SQLite store ``canary.db`` in a fresh working directory; the fixture is its check."""
    monkeypatch.chdir(tmp_path)
    with memfold.open_store("sqlite:///canary.db") as store:
        store.append("canary", Message(role="user", content="keep me"))
        initial = store.load("canary")

    def check() -> None:
        with memfold.open_store("sqlite:///canary.db") as store:
            assert store.load("canary") == initial

    return check


@FUZZ_SLOW
@given(
    name=st.sampled_from(sorted(OPENERS)),
    url=urls() | hostile_ids(),
    options=st.dictionaries(st.sampled_from(OPTION_NAMES) | hostile_text(max_size=8),
                            OPTION_VALUES, max_size=3),
)  # fmt: skip
async def test_openers_open_or_refuse(
    canary: Callable[[], None], name: str, url: Any, options: dict[str, Any]
) -> None:
    """Every opener, with a hostile URL and hostile options, returns working stores or raises
    a memfold error (an unknown option may also be a TypeError, as for any Python call)."""
    if "schema" in options or "key_prefix" in options:
        options.pop("schema", None)  # server identifiers: test_server_identifiers_...
        options.pop("key_prefix", None)
    try:
        stores = await opened(name, url, options)
    except MemfoldError:
        pass
    except TypeError as exc:  # an option the opener does not take
        assert "unexpected keyword argument" in str(exc)  # noqa: PT017
    else:
        close(stores)
    canary()


@pytest.mark.parametrize("name", sorted(OPENERS))
@pytest.mark.parametrize(
    "url",
    ["sqlite:///a\x00b.db", "memory://?\udc80=1", "\ud800", b"x", "REDIS:", "redis://h:99999"],
)
async def test_a_url_drivers_cannot_read_is_invalid_input(name: str, url: Any) -> None:
    """Regression: a NUL in a SQLite path (ValueError from the driver), a lone surrogate in a
    query option (UnicodeEncodeError from the URL encoder), and a Redis URL redis-py cannot
    parse (ValueError) are InvalidInput from every opener."""
    with pytest.raises(InvalidInput):
        await opened(name, url, {})


def test_a_redis_key_prefix_must_be_valid_unicode() -> None:
    """Regression: a key prefix with a lone surrogate is InvalidInput (it was accepted, and
    failed on first use with UnicodeEncodeError)."""
    with pytest.raises(InvalidInput, match="key_prefix"):
        memfold.open_store(REDIS_URL, key_prefix="memfold-test:\ud800:")


def _drop_schema(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            psycopg.sql.Identifier(schema)))  # fmt: skip


def _schemas(prefix: str) -> list[str]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
        ).fetchall()
    return [row[0] for row in rows]


def _redis_keys(pattern: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


@FUZZ
@given(
    suffix=hostile_text(max_size=12) | st.sampled_from(["", "x", "_1", "a" * 60]),
    prefix=hostile_text(max_size=12) | st.sampled_from(["memfold_", "t_", "x" * 40]),
)
async def test_server_identifiers_are_refused_or_quoted(suffix: str, prefix: str) -> None:
    """A PostgreSQL schema and table prefix, and a Redis key prefix, built from hostile text
    are refused with InvalidInput or used as given: the stores work, PostgreSQL holds exactly
    that schema, Redis keys start with exactly that prefix, and nothing else is created."""
    run = f"memfold_test_{uuid.uuid4().hex[:12]}"
    schema = run + suffix
    try:
        stores = [
            memfold.open_store(PG_URL, schema=schema, table_prefix=prefix),
            open_memory_store(PG_URL, schema=schema, table_prefix=prefix, embedder=EMBEDDER),
        ]
    except InvalidInput:
        assert _schemas(run) == []
    else:
        try:
            stores[0].append("t", Message(role="user", content="x"))
            assert stores[0].count("t") == 1
            assert _schemas(run) == [schema]
        finally:
            close(stores)
            _drop_schema(schema)
    key_prefix = f"memfold-test:{run}:{suffix}{prefix}"
    try:
        stores = [
            memfold.open_store(REDIS_URL, key_prefix=key_prefix),
            open_memory_store(REDIS_URL, key_prefix=key_prefix, embedder=EMBEDDER),
        ]
    except InvalidInput:
        assert _redis_keys(f"memfold-test:{run}:*") == []
    else:
        try:
            stores[0].append("t", Message(role="user", content="x"))
            assert stores[0].count("t") == 1
            keys = _redis_keys(f"memfold-test:{run}:*")
            assert keys
            assert all(k.startswith(key_prefix.encode("utf-8", "surrogatepass")) for k in keys)
        finally:
            close(stores)
            client = redis.Redis.from_url(REDIS_URL)
            for key in _redis_keys(f"memfold-test:{run}:*"):
                client.delete(key)
            client.close()
