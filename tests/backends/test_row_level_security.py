"""PostgreSQL row-level security: with memfold's policies on every table and stores opened with
``row_level_security=True``, a role bound by the policies reads and writes only the tenant its
transaction names, through memfold and through raw SQL alike."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from memfold import Erased, InvalidInput, MemfoldError, Message, Subject, erase, open_store
from memfold.backends.sql import SQLThreadStore
from memfold.backends.sql.checkpoint_store import SQLCheckpointStore
from memfold.backends.sql.memory_store import SQLMemoryStore
from memfold.backends.sql.tenancy import policies
from memfold.checkpoints import Blob, PendingWrite, RetentionPolicy
from memfold.journal import EffectJournal
from memfold.memories import MemoryRecord
from memfold.recall.embedders import HashingEmbedder
from tests.support import PG_URL, Api

DIMS = 8
TABLES = ["threads", "messages", "cp_threads", "checkpoints", "cp_values", "cp_writes",
          "cp_journal", "memories", "tombstones"]  # fmt: skip


@dataclass
class Stores:
    """The three SQL store kinds on one schema, opened by one role."""

    threads: SQLThreadStore
    checkpoints: SQLCheckpointStore
    memories: SQLMemoryStore

    def close(self) -> None:
        for store in (self.threads, self.checkpoints, self.memories):
            store.close()


def _open(url: str, schema: str, **options: Any) -> Stores:
    return Stores(
        SQLThreadStore(url, schema=schema, **options),
        SQLCheckpointStore(url, schema=schema, **options),
        SQLMemoryStore(url, schema=schema, embedder=HashingEmbedder(DIMS), **options),
    )


@dataclass
class Setting:
    """A schema whose tables have memfold's policies, and a role they bind."""

    schema: str
    role: str
    url: str  # PG_URL, logged in as the role

    def connect(self) -> psycopg.Connection[Any]:
        """A raw connection as the role (not the one memfold uses)."""
        return psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"))


@pytest.fixture
def setting() -> Iterator[Setting]:
    """memfold's tables in a fresh schema, set up by the owner with the policies enabled, and a
    fresh LOGIN role (no superuser, no BYPASSRLS) granted their rows; both dropped afterwards."""
    schema, role = f"memfold_test_{uuid.uuid4().hex}", f"memfold_app_{uuid.uuid4().hex[:16]}"
    password = secrets.token_hex(8)
    owner = _open(PG_URL, schema)
    try:
        for store in (owner.threads, owner.checkpoints, owner.memories):
            store.setup()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            for grant in (
                "GRANT USAGE ON SCHEMA {s} TO {r}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            ):
                admin.execute(
                    sql.SQL(grant).format(s=sql.Identifier(schema), r=sql.Identifier(role))
                )
            for store in (owner.threads, owner.checkpoints, owner.memories):
                for statement in policies(store):
                    admin.execute(statement)
        url = make_url(PG_URL).set(username=role, password=password)
        yield Setting(schema, role, url.render_as_string(hide_password=False))
    finally:
        owner.close()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


async def _write(stores: Stores, tenant: str, use_async: bool) -> None:
    """One thread, one checkpoint with a pending write and a journal entry, and one memory."""
    threads = Api(stores.threads, use_async)
    await threads.append("t", [Message(role="user", content=f"{tenant} secret plans")],
                         tenant=tenant)  # fmt: skip
    checkpoints = Api(stores.checkpoints, use_async)  # type: ignore[arg-type]
    await checkpoints.put("t", "c1", Blob("json", b"{}"), versions={"x": 1},
                          values={"x": Blob("json", b'"v"')}, tenant=tenant)  # fmt: skip
    await checkpoints.put_writes("t", "c1", [PendingWrite("task", 0, "x", Blob("json", b"1"))],
                                 tenant=tenant)  # fmt: skip
    journal = Api(EffectJournal(stores.checkpoints), use_async)  # type: ignore[arg-type]
    await journal.record("t", "call", {"done": tenant}, tenant=tenant)
    memories = Api(stores.memories, use_async)  # type: ignore[arg-type]
    await memories.put((tenant, "u1"), f"{tenant} likes green tea", id="m")


def _count_by_tenant(conn: psycopg.Connection[Any], schema: str) -> dict[str, set[str]]:
    """Which tenants each table's visible rows belong to."""
    return {
        table: {
            row[0]
            for row in conn.execute(
                sql.SQL("SELECT DISTINCT tenant FROM {}").format(
                    sql.Identifier(schema, f"memfold_{table}")
                )
            )
        }
        for table in TABLES
    }


def _as_tenant(conn: psycopg.Connection[Any], tenant: str) -> None:
    conn.execute("SELECT set_config('memfold.tenant', %s, true)", (tenant,))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_policy_bound_role_sees_and_writes_only_its_transactions_tenant(
    setting: Setting, use_async: bool
) -> None:
    """memfold sets each transaction's tenant, so the role writes and reads both tenants
    through the stores; in raw SQL it sees, changes and deletes only the rows of the tenant it
    sets (none without one), and cannot write a row of another tenant."""
    app = _open(setting.url, setting.schema, row_level_security=True)
    try:
        for tenant in ("acme", "rival"):
            await _write(app, tenant, use_async)
        threads = Api(app.threads, use_async)
        assert [m.content for m in await threads.load("t", tenant="rival")] == [
            "rival secret plans"
        ]
        assert [h.message.content for h in await threads.search("secret", tenant="acme")] == [
            "acme secret plans"
        ]
        got = await Api(app.checkpoints, use_async).get("t", tenant="acme")  # type: ignore[arg-type]
        assert (got.values["x"], len(got.writes)) == (Blob("json", b'"v"'), 1)
        hits = await Api(app.memories, use_async).search(("rival",), "green tea")  # type: ignore[arg-type]
        assert [h.record.text for h in hits] == ["rival likes green tea"]
        # The session keeps no tenant once a transaction ends (safe behind PgBouncer).
        raw = app.threads.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT current_setting('memfold.tenant', true)")
            assert cursor.fetchone()[0] in ("", None)
        finally:
            raw.close()
    finally:
        app.close()

    with setting.connect() as conn:
        assert all(not seen for seen in _count_by_tenant(conn, setting.schema).values())
        conn.rollback()
        _as_tenant(conn, "rival")
        seen = _count_by_tenant(conn, setting.schema)
        assert seen == {table: {"rival"} for table in TABLES} | {"tombstones": set()}
        for table in TABLES[:-1]:
            name = sql.Identifier(setting.schema, f"memfold_{table}")
            assert conn.execute(sql.SQL("UPDATE {} SET tenant = tenant").format(name)).rowcount
        conn.execute(sql.SQL("DELETE FROM {}").format(
            sql.Identifier(setting.schema, "memfold_messages")))  # fmt: skip
        conn.commit()
        _as_tenant(conn, "rival")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                sql.SQL("UPDATE {} SET tenant = 'acme'").format(
                    sql.Identifier(setting.schema, "memfold_threads")
                )
            )
        conn.rollback()
        _as_tenant(conn, "rival")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (tenant, thread_id, created_at, updated_at, message_count, "
                    "metadata) VALUES ('acme', 'planted', 0, 0, 0, '{{}}')"
                ).format(sql.Identifier(setting.schema, "memfold_threads"))
            )
        conn.rollback()

    with psycopg.connect(PG_URL) as admin:  # the owner: not bound by the policies
        seen = _count_by_tenant(admin, setting.schema)
        assert seen == {t: {"acme", "rival"} for t in TABLES} | {
            "messages": {"acme"},
            "tombstones": set(),
        }


def test_without_the_option_the_role_reaches_no_rows(setting: Setting) -> None:
    """A store opened by the role without ``row_level_security`` names no tenant to the
    database, so its reads find nothing and its writes are refused."""
    plain = open_store(setting.url, schema=setting.schema, setup=False)
    try:
        assert plain.list_threads(tenant="acme") == []
        with pytest.raises(MemfoldError, match="privilege"):
            plain.append("t", Message(role="user", content="x"), tenant="acme")
    finally:
        plain.close()


def test_memory_writes_hold_one_tenant_and_sweeps_span_none(setting: Setting) -> None:
    """Under row-level security one memory write holds one tenant's records, and a sweep of
    every tenant (which sets none) removes nothing, while a sweep of one tenant does."""
    app = _open(setting.url, setting.schema, row_level_security=True)
    try:
        with pytest.raises(InvalidInput, match="one tenant"):
            app.memories.put_many(
                [MemoryRecord(("acme", "u"), text="a"), MemoryRecord(("rival", "u"), text="b")]
            )
        app.memories.put_many([MemoryRecord(("acme", "u"), text="a", ttl_seconds=0.001)])
        app.checkpoints.put("t", "c1", Blob("json", b"{}"), tenant="acme")
        time.sleep(0.01)
        assert app.memories.sweep().records == 0
        assert app.memories.sweep(tenant="acme").records == 1
        assert app.checkpoints.sweep(RetentionPolicy(ttl_seconds=0.001)).threads == 0
        assert app.checkpoints.sweep(RetentionPolicy(ttl_seconds=0.001), tenant="acme").threads == 1
    finally:
        app.close()
    with psycopg.connect(PG_URL) as admin:
        assert _count_by_tenant(admin, setting.schema)["memories"] == set()


def test_an_erasure_runs_under_row_level_security(setting: Setting) -> None:
    """The role erases one tenant's user through stores setting the tenant: that user's
    memories go, a tombstone of that tenant refuses a late write, and the other tenant's data
    and writes are untouched; the tombstone is visible to its own tenant only."""
    app = _open(setting.url, setting.schema, row_level_security=True)
    try:
        for tenant in ("acme", "rival"):
            app.memories.put((tenant, "u1"), f"{tenant} likes green tea", id="m")
        report = erase(Subject("rival", "u1"), [app.threads, app.checkpoints, app.memories])
        assert report.counts.memories == 1
        with pytest.raises(Erased):
            app.memories.put(("rival", "u1"), "late write")
        app.memories.put(("acme", "u1"), "still writable")
        assert app.memories.count(("acme",)) == 2
    finally:
        app.close()
    with setting.connect() as conn:
        _as_tenant(conn, "acme")
        assert _count_by_tenant(conn, setting.schema)["tombstones"] == set()
        conn.rollback()
        _as_tenant(conn, "rival")
        assert _count_by_tenant(conn, setting.schema)["tombstones"] == {"rival"}


def test_row_level_security_is_postgresql_only(tmp_path: Any) -> None:
    """SQLite has no policies: asking for row-level security there is refused; the URL option
    turns it on for PostgreSQL."""
    with pytest.raises(InvalidInput, match="PostgreSQL"):
        SQLThreadStore(f"sqlite:///{tmp_path / 'x.db'}", row_level_security=True)
    with pytest.raises(InvalidInput, match="PostgreSQL"):
        open_store(f"sqlite:///{tmp_path / 'y.db'}?row_level_security=true")
    store = SQLCheckpointStore(f"{PG_URL}?row_level_security=true", schema="unused")
    assert store._runner.row_level_security
    store.close()
