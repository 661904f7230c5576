"""The first released SQL schema of every store kind, built from frozen DDL (``release_1.json``,
never from today's code), with rows memfold wrote on it."""

from __future__ import annotations

import hashlib
import json
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from tests.support import PG_URL

__all__ = ["DIMENSIONS", "RELEASE_1", "create_release_1", "engine_for", "release_1_database"]

RELEASE_1: dict[str, Any] = json.loads(
    Path(__file__).with_name("release_1.json").read_text(encoding="utf-8")
)
DIMENSIONS = 4
"""The frozen PostgreSQL memory table's vector length."""


def engine_for(url: str) -> Engine:
    """A SQLAlchemy engine for ``url`` (psycopg 3 for PostgreSQL)."""
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def create_release_1(url: str, schema: str | None, prefix: str = "memfold_") -> None:
    """Make every SQL store kind's first released schema at ``url`` from the frozen DDL, record
    it as the first release did, and store the frozen rows in it."""
    engine = engine_for(url)
    dialect = engine.dialect.name
    s = f"{schema}." if schema else ""
    with engine.begin() as conn:
        if schema:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        if dialect == "postgresql":
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
        conn.exec_driver_sql(
            f"CREATE TABLE {s}{prefix}schema_versions (component VARCHAR(64) NOT NULL, "
            "version INTEGER NOT NULL, checksum VARCHAR(64) NOT NULL, "
            "applied_at FLOAT NOT NULL, PRIMARY KEY (component, version))"
        )
        for kind in ("threads", "checkpoints", "memories"):
            ddl = [x.format(p=prefix, s=s) for x in RELEASE_1["ddl"][kind][dialect]]
            for statement in ddl:
                conn.exec_driver_sql(statement)
            conn.execute(
                text(f"INSERT INTO {s}{prefix}schema_versions VALUES (:kind, 1, :sum, :now)"),
                {
                    "kind": kind,
                    "sum": hashlib.sha256("\n".join(ddl).encode()).hexdigest(),
                    "now": time.time(),
                },
            )
        for table, rows in RELEASE_1["rows"].items():
            for row in rows:
                values = {k: bytes.fromhex(v["hex"]) if isinstance(v, dict) else v
                          for k, v in row.items()}  # fmt: skip
                slots = [f":{name}" for name in values]
                if table == "memories":
                    vector = values["embedding"]
                    if dialect == "postgresql":
                        values["embedding"] = str(vector)
                        slots = [
                            f"CAST(:{n} AS {'jsonb' if n == 'value' else 'vector'})"
                            if n in ("value", "embedding") else f":{n}"
                            for n in values
                        ]  # fmt: skip
                    else:
                        values["embedding"] = struct.pack(f"<{len(vector)}f", *vector)
                conn.execute(
                    text(
                        f"INSERT INTO {s}{prefix}{table} ({', '.join(values)}) "
                        f"VALUES ({', '.join(slots)})"
                    ),
                    values,
                )
    engine.dispose()


@contextmanager
def release_1_database(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The URL and store options of a database holding every SQL store kind's first released
    schema and rows: a file in ``tmp_path`` or a fresh PostgreSQL schema, dropped afterwards."""
    if backend == "sqlite":
        url, options = f"sqlite:///{tmp_path / 'release-1.db'}", {}
        create_release_1(url, None)
        yield url, options
        return
    schema = f"memfold_test_{uuid.uuid4().hex}"
    create_release_1(PG_URL, schema)
    try:
        yield PG_URL, {"schema": schema}
    finally:
        engine = engine_for(PG_URL)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()
