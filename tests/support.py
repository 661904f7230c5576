"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import memfold
from memfold import BackendUnavailable, UnsupportedOperation
from memfold.checkpoints import BaseCheckpointStore, open_checkpoint_store
from memfold.stores import BaseThreadStore

BACKENDS = ["memory", "sqlite", "postgresql", "redis", "tiered"]

REDIS_URL = os.environ.get("MEMFOLD_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HOW_TO_START = "start the servers with `sudo scripts/services.sh`"


def make_store(backend: str, tmp_path: Path, **options: Any) -> BaseThreadStore:
    """A fresh store of ``backend`` whose files live in ``tmp_path`` (or, on a server, under a
    fresh key prefix that `drop_store` deletes)."""
    if backend == "memory":
        return memfold.open_store("memory://", **options)
    if backend == "redis":
        return redis_store(**options)
    if backend == "postgresql":
        return postgres_store(**options)
    if backend == "tiered":
        from memfold.backends.tiered import TieredThreadStore

        return TieredThreadStore(redis_store(), postgres_store(**options))
    return memfold.open_store(f"sqlite:///{tmp_path / 'memfold.db'}", **options)


def redis_store(**options: Any) -> BaseThreadStore:
    """A Redis store under a fresh random key prefix; fails the test if Redis is unreachable."""
    options.setdefault("key_prefix", f"memfold-test:{uuid.uuid4().hex}:")
    try:
        return memfold.open_store(REDIS_URL, **options)
    except BackendUnavailable as exc:
        error = str(exc)
    pytest.fail(
        f"Redis at {REDIS_URL} (MEMFOLD_REDIS_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


def postgres_store(**options: Any) -> BaseThreadStore:
    """A PostgreSQL store in a fresh schema, created here and dropped by `drop_store`; fails
    the test if the server is unreachable."""
    import psycopg
    from psycopg import sql

    schema = options.setdefault("schema", f"memfold_test_{uuid.uuid4().hex}")
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.OperationalError as exc:
        error = str(exc).strip()
    else:
        return memfold.open_store(PG_URL, **options)
    pytest.fail(
        f"PostgreSQL at {PG_URL} (MEMFOLD_PG_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


def postgres_checkpoint_store(**options: Any) -> BaseCheckpointStore:
    """A PostgreSQL checkpoint store in a fresh schema, dropped by `drop_checkpoint_store`;
    fails the test if the server is unreachable."""
    options.setdefault("schema", f"memfold_test_{uuid.uuid4().hex}")
    try:
        return open_checkpoint_store(PG_URL, **options)
    except BackendUnavailable as exc:
        error = str(exc).strip()
    pytest.fail(
        f"PostgreSQL at {PG_URL} (MEMFOLD_PG_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


def redis_checkpoint_store(**options: Any) -> BaseCheckpointStore:
    """A Redis checkpoint store under a fresh random key prefix, deleted by
    `drop_checkpoint_store`; fails the test if Redis is unreachable."""
    options.setdefault("key_prefix", f"memfold-test:{uuid.uuid4().hex}:")
    try:
        return open_checkpoint_store(REDIS_URL, **options)
    except BackendUnavailable as exc:
        error = str(exc)
    pytest.fail(
        f"Redis at {REDIS_URL} (MEMFOLD_REDIS_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


def tiered_checkpoint_store(**options: Any) -> BaseCheckpointStore:
    """A Redis checkpoint store in front of a PostgreSQL one, both fresh; `drop_checkpoint_store`
    deletes what they leave."""
    from memfold.backends.tiered_checkpoints import TieredCheckpointStore

    hot = redis_checkpoint_store(**options)
    return TieredCheckpointStore(hot, postgres_checkpoint_store(**options))


def drop_checkpoint_store(store: BaseCheckpointStore) -> None:
    """Delete the schema a PostgreSQL test checkpoint store made, or the keys of a Redis one
    (nothing for files and memory)."""
    for tier in ("hot", "durable"):
        if store.name == "tiered":
            drop_checkpoint_store(getattr(store, tier))
    prefix = getattr(store, "key_prefix", None)
    if store.name == "redis" and prefix:
        _drop_redis_prefix(prefix)
    schema = getattr(getattr(store, "tables", None), "schema", None)
    if store.name == "postgresql" and schema and schema.startswith("memfold_test_"):
        import psycopg
        from psycopg import sql

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def drop_store(store: BaseThreadStore) -> None:
    """Delete what a test store left on its server (nothing to do for files and memory)."""
    for tier in ("hot", "durable"):
        if store.name == "tiered":
            drop_store(getattr(store, tier))
    schema = getattr(getattr(store, "tables", None), "schema", None)
    if store.name == "postgresql" and schema and schema.startswith("memfold_test_"):
        import psycopg
        from psycopg import sql

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    prefix = getattr(store, "key_prefix", None)
    if store.name == "redis" and prefix:
        _drop_redis_prefix(prefix)


def _drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for batch in _batches(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(*batch)
    finally:
        client.close()


def _batches(items: Any, size: int = 500) -> Any:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def has(api: Api, capability: str) -> bool:
    """Whether the store under test declares ``capability``; if it does not, this first checks
    that a call needing it raises UnsupportedOperation, so the test still asserts something."""
    if getattr(api.store.capabilities, capability):
        return True
    with pytest.raises(UnsupportedOperation):
        await _PROBES[capability](api)
    return False


async def needs(api: Api, capability: str) -> None:
    """Skip a test of ``capability`` on backends without it, once `has` has checked that they
    refuse it with UnsupportedOperation."""
    if not await has(api, capability):
        pytest.skip(f"{api.store.name} lacks {capability}: UnsupportedOperation checked")


_PROBES: dict[str, Callable[[Api], Awaitable[Any]]] = {
    "full_text_search": lambda api: api.search("probe"),
}


class Api:
    """Calls a store's sync methods or their async twins behind one awaitable interface."""

    def __init__(self, store: BaseThreadStore, use_async: bool) -> None:
        self.store = store
        self.use_async = use_async

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.use_async:
                return await getattr(self.store, "a" + name)(*args, **kwargs)
            return getattr(self.store, name)(*args, **kwargs)

        return call
