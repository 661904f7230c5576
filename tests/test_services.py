"""The servers the suite needs answer: PostgreSQL with pgvector, and Redis.

``scripts/services.sh`` installs and starts them. An unreachable server fails these tests with a
message saying how to start it; it is never skipped.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator

import psycopg
import pytest
import redis

PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MEMFOLD_REDIS_URL", "redis://127.0.0.1:6379/0")
HOW_TO_START = "start the servers with `sudo scripts/services.sh`"


def _shown(url: str) -> str:
    """``url`` with any password masked, fit for a failure message."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def pg_connect(url: str = PG_URL) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to the PostgreSQL server at ``url``; fails the test if there is none."""
    libpq_url = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)
    try:
        return psycopg.connect(libpq_url, connect_timeout=5, autocommit=True)
    except psycopg.Error as exc:
        error = str(exc).strip()
    # Failing outside the except clause keeps the driver's traceback chain out of the report.
    pytest.fail(
        f"PostgreSQL at {_shown(url)} (MEMFOLD_PG_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


def redis_connect(url: str = REDIS_URL) -> redis.Redis:
    """A client of the Redis server at ``url`` that has answered PING; fails the test if none."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        error = str(exc)
    else:
        return client
    client.close()
    pytest.fail(
        f"Redis at {_shown(url)} (MEMFOLD_REDIS_URL) is unreachable: {error}\n{HOW_TO_START}",
        pytrace=False,
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_postgresql_answers() -> None:
    """The configured PostgreSQL server accepts a connection and runs a query."""
    with pg_connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_pgvector_is_installed() -> None:
    """The vector extension exists in the configured database and computes L2 distances."""
    with pg_connect() as conn:
        query = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        row = conn.execute(query).fetchone()
        if row is None:
            pytest.fail(
                f"the vector extension is missing in {_shown(PG_URL)}: {HOW_TO_START}",
                pytrace=False,
            )
        distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector").fetchone()
        assert distance == (1.0,)


def test_redis_answers() -> None:
    """The configured Redis server answers PING."""
    client = redis_connect()
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_unreachable_postgresql_fails_with_how_to_start(closed_port: int) -> None:
    """A PostgreSQL server that does not answer fails the test, saying how to start it."""
    url = f"postgresql://postgres:secret@127.0.0.1:{closed_port}/test"
    with pytest.raises(pytest.fail.Exception, match=r"sudo scripts/services\.sh") as failure:
        pg_connect(url)
    assert "secret" not in str(failure.value)


def test_unreachable_redis_fails_with_how_to_start(closed_port: int) -> None:
    """A Redis server that does not answer fails the test, saying how to start it."""
    with pytest.raises(pytest.fail.Exception, match=r"sudo scripts/services\.sh"):
        redis_connect(f"redis://127.0.0.1:{closed_port}/0")
