"""A database made by an older memfold upgrades in place with ``setup()``, its data intact."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Dialect, text
from sqlalchemy.dialects import postgresql, sqlite

from memfold import Conflict, Message, Part
from memfold.backends.sql import SQLThreadStore, migrations, words
from memfold.backends.sql.schema import build_tables
from tests.support import PG_URL, drop_store

# Step 1's DDL as released, hashed: editing a released step would break every database on it.
RELEASED_STEP_1 = {
    "sqlite": "a71453450fcec56ffce0b7ee846b943f27f5629e4e0c745f755fe4251142bcc6",
    "postgresql": "805d2e7d17cc3b8482a63e37e3d153f42f21921cefc1c5be50ecf36bc8f7a3bf",
}
WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=lambda d: d.name)
def test_released_step_1_is_unchanged(dialect: Dialect) -> None:
    """Schema step 1 still hashes to the checksum databases made by the first release hold."""
    tables = build_tables()
    assert migrations.STEPS[0].checksum(tables, dialect) == RELEASED_STEP_1[dialect.name]


@pytest.fixture(params=["sqlite", "postgresql"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLThreadStore]:
    """A store whose database holds only schema step 1 (the first release's tables)."""
    if request.param == "sqlite":
        store = SQLThreadStore(f"sqlite:///{tmp_path / 'release-1.db'}")
    else:  # a fresh schema, which step 1 creates (and drop_store drops)
        store = SQLThreadStore(PG_URL, schema=f"memfold_test_{uuid.uuid4().hex}")
    dialect = store.engine.dialect
    version = store._run(
        lambda: migrations._migrate(
            store.tables, store.tables, dialect, migrations.COMPONENT, migrations.STEPS[:1]
        ),
        write=True,
    )
    assert version == 1
    try:
        yield store
    finally:
        store.close()
        drop_store(store)


def _write_as_release_1(
    store: SQLThreadStore,
    tenant: str,
    thread_id: str,
    messages: list[Message],
    metadata: str = "{}",
) -> None:
    """Store a thread the way the first release did: two string keys per row, the id inside
    the body, and the text copied for search."""
    prefix = store.tables.prefix
    schema = "" if store.tables.schema is None else f'"{store.tables.schema}".'
    is_pg = store.name == "postgresql"
    now = time.time()
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {schema}{prefix}threads (tenant, thread_id, created_at, updated_at, "
                "message_count, metadata) VALUES (:tenant, :thread, :now, :now, :n, :meta)"
            ),
            {
                "tenant": tenant,
                "thread": thread_id,
                "now": now,
                "n": len(messages),
                "meta": metadata,
            },
        )
        for m in messages:
            conn.execute(
                text(
                    f"INSERT INTO {schema}{prefix}messages (tenant, thread_id, message_id, body, "
                    "search_text) VALUES (:tenant, :thread, :id, :body, :search)"
                ),
                {
                    "tenant": tenant,
                    "thread": thread_id,
                    "id": m.id,
                    "body": m.to_json(),
                    "search": words.document(m.text) if is_pg else m.text.replace("\x00", " "),
                },
            )


def test_a_release_1_database_upgrades_with_its_data(old_store: SQLThreadStore) -> None:
    """setup() moves a first-release database to the current schema: every message, thread,
    count, metadata and tenant boundary survives, search finds the old text, and the thread
    keeps growing in order afterwards."""
    thread = [
        Message(role="user", content="hello wide world", id="m1", created_at=WHEN),
        Message(
            role="assistant",
            content=(Part(type="text", text="a picture"), Part(type="image", extra={"id": "p"})),
            id="m2",
            created_at=WHEN,
            metadata={"k": [1, "two"]},
        ),
        Message(
            role="tool", content="nul\x00byte here", id="m3", tool_call_id="c", created_at=WHEN
        ),
    ]
    secret = [Message(role="user", content="secret plans", id="m1", created_at=WHEN)]
    _write_as_release_1(old_store, "acme", "t1", thread, metadata='{"topic": "greeting"}')
    _write_as_release_1(old_store, "rival", "t1", secret)

    assert old_store.setup() == migrations.STEPS[-1].version == 2
    assert old_store.setup() == 2  # idempotent

    assert old_store.load("t1", tenant="acme") == thread
    assert old_store.load("t1", tenant="rival") == secret
    assert old_store.load("t1", tenant="acme", before="m3", last=1) == thread[1:2]
    info = old_store.get_thread("t1", tenant="acme")
    assert (info.message_count, dict(info.metadata)) == (3, {"topic": "greeting"})
    assert [t.tenant for t in old_store.list_threads(tenant="rival")] == ["rival"]
    assert [h.message.id for h in old_store.search("world", tenant="acme")] == ["m1"]
    assert [h.message.id for h in old_store.search("picture", tenant="acme")] == ["m2"]
    assert [h.message.id for h in old_store.search("byte", tenant="acme")] == ["m3"]
    assert old_store.search("secret", tenant="acme") == []

    added = old_store.append("t1", Message(role="user", content="after the upgrade"), tenant="acme")
    assert old_store.load("t1", tenant="acme") == thread + added
    assert old_store.count("t1", tenant="acme") == 4
    with pytest.raises(Conflict):
        old_store.append("t1", Message(role="user", content="again", id="m2"), tenant="acme")
    assert old_store.delete_messages("t1", ["m2"], tenant="acme") == [thread[1]]
    assert old_store.search("picture", tenant="acme") == []
    assert old_store.delete_thread("t1", tenant="rival")
    assert old_store.load("t1", tenant="rival") == []
