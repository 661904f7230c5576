"""Helpers shared by the test modules."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import memfold
from memfold import BackendUnavailable, UnsupportedOperation
from memfold.checkpoints import BaseCheckpointStore, open_checkpoint_store
from memfold.memories import BaseMemoryStore, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.stores import BaseThreadStore

BACKENDS = ["memory", "sqlite", "postgresql", "redis", "tiered"]

REDIS_URL = os.environ.get("MEMFOLD_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HOW_TO_START = "start the servers with `sudo scripts/services.sh`"

MEMORY_BACKENDS = ["memory", "sqlite", "postgresql"]
"""The memory-store backends every long-term memory suite runs on (Chroma and Redis have their
own suites in tests/backends; `make_memory_store` also opens ``chroma`` and ``chroma+http``)."""
MEMORY_DIMS = 64
CHROMA = Path(sys.executable).with_name("chroma")


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


def make_memory_store(backend: str, tmp_path: Path, **options: Any) -> BaseMemoryStore:
    """A fresh, set-up memory store of ``backend`` embedding with a `HashingEmbedder` unless
    ``embedder=`` is given: files in ``tmp_path``, a fresh collection on this process's
    `chroma_server` (``chroma+http``), or a fresh PostgreSQL schema or Redis key prefix that
    `drop_checkpoint_store` drops."""
    options.setdefault("embedder", HashingEmbedder(MEMORY_DIMS))
    if backend == "memory":
        return open_memory_store("memory://", **options)
    if backend == "sqlite":
        return open_memory_store(f"sqlite:///{tmp_path / 'memories.db'}", **options)
    if backend == "chroma":
        return open_memory_store(f"chroma://{tmp_path / 'chroma'}", **options)
    if backend == "chroma+http":
        options.setdefault("collection", f"t-{uuid.uuid4().hex}")
        return open_memory_store(chroma_server(), **options)
    if backend == "redis":
        options.setdefault("key_prefix", f"memfold-test:{uuid.uuid4().hex}:")
        try:
            return open_memory_store(REDIS_URL, **options)
        except BackendUnavailable as exc:
            error = str(exc)
        pytest.fail(f"Redis at {REDIS_URL} is unreachable: {error}\n{HOW_TO_START}", pytrace=False)
    options.setdefault("schema", f"memfold_test_{uuid.uuid4().hex}")
    try:
        return open_memory_store(PG_URL, **options)
    except BackendUnavailable as exc:
        error = str(exc).strip()
    pytest.fail(
        f"PostgreSQL at {PG_URL} (MEMFOLD_PG_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


@cache
def chroma_server() -> str:
    """``chroma+http://127.0.0.1:PORT`` of a ``chroma run`` server started on a free port once
    per test process and stopped when it exits; fails the test with the server's log if it does
    not come up."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = Path(tempfile.mkdtemp(prefix="memfold-chroma-"))
    log = (data / "server.log").open("wb")
    server = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(data / "db"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )  # fmt: skip

    def stop() -> None:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1):
                return f"chroma+http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                output = (data / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(
                    f"`{CHROMA} run --port {port}` did not start (the chroma extra installs it: "
                    f"pip install 'memfold[chroma]'); its output:\n{output}",
                    pytrace=False,
                )
            time.sleep(0.2)


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
    from memfold.backends.redis.checkpoint_store import RedisCheckpointStore
    from memfold.backends.tiered_checkpoints import TieredCheckpointStore

    hot = redis_checkpoint_store(**options)
    assert isinstance(hot, RedisCheckpointStore)
    return TieredCheckpointStore(hot, postgres_checkpoint_store(**options))


def kill_at_marker(
    process: multiprocessing.process.BaseProcess, marker: Path, what: str, timeout: float = 120
) -> None:
    """SIGKILL ``process`` once it has written ``marker`` (the point a test kills it at); fail
    the test if it ends first or ``what`` does not happen within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.is_alive(), f"the process ended before {what} ({process.exitcode})"
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(30)
    assert process.exitcode == -signal.SIGKILL


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
