"""A database made by the first release upgrades in place, its data intact, for every SQL store
kind and backend: its schema is built from the frozen DDL in ``release_1.json`` (never from
today's code), with the rows memfold wrote on it, then brought up to date."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Dialect, Table, select, text
from sqlalchemy.dialects import postgresql, sqlite

from memfold import Conflict, Message, Part, RetentionPolicy
from memfold.backends.bodies import micros, stored_time
from memfold.backends.sql import SQLThreadStore, migrations, words
from memfold.backends.sql.checkpoint_rows import id_text
from memfold.backends.sql.checkpoint_schema import build_checkpoint_tables
from memfold.backends.sql.checkpoint_store import SQLCheckpointStore
from memfold.backends.sql.memory_schema import MEMORY_STEPS, build_memory_tables
from memfold.backends.sql.memory_store import SQLMemoryStore
from memfold.backends.sql.schema import UNKNOWN_FIRST_US, build_tables
from memfold.checkpoint_deltas import pack_sequence
from memfold.checkpoints import Blob, PendingWrite, SequenceBlob
from memfold.journal import EffectJournal
from memfold.schema_steps import SchemaSteps
from tests.backends.release_1 import DIMENSIONS, RELEASE_1, release_1_database
from tests.support import PG_URL, drop_checkpoint_store

WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
DIALECTS = [sqlite.dialect(), postgresql.dialect()]

# Every released step's DDL for the default prefix, hashed: editing a released step would break
# every database made with it. A schema change is a new step (see docs/operations.md).
RELEASED = {
    ("threads", "sqlite"): [
        "a71453450fcec56ffce0b7ee846b943f27f5629e4e0c745f755fe4251142bcc6",
        "381533d2dcb3d73672ac2e4875b3617663ccdf42928c4b205f0275f344da85ae",
        "ca48be5a0507a816066d3ed2c6d6e38dd31c0d50d99015185f5f589f4eced600",
        "ff4c702e211067d94c906312219a38d197083b469d9716497150fa5d21014be4",
        "f87db61acf9c23909162151e3302787ecde1ece02c0a458086b5ecb4e33905e0",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "2360236fa3f702c77af1457d7a99b1857eb7f607e06cbd546b40c874e311d815",
        "646dd393f66eb843eb6780634a2a4e80597613ef1a0823c1f133406f50f460e3",
        "58976ab04c55f2b4698408f8e7e5444e8bcf9b3a7e255c77c276ee214fa1196b",
    ],
    ("threads", "postgresql"): [
        "805d2e7d17cc3b8482a63e37e3d153f42f21921cefc1c5be50ecf36bc8f7a3bf",
        "151a7db56a6e37271eb12dcd45cba78a19ed63e103a4abca216cd96727a764b6",
        "3d9d0efde5ecd27af647e6a841b5dc7d409cd4811d4e7ce9716cf3b20112c6f2",
        "f151e0205e4e6a4cdf20f0d6a069f62ee2512e6fb04982eab090eba0ab470377",
        "fc2408b719b870d911bbe56b22e71a05ee5b3d71ad6d68d670ca4a89decb4161",
        "abdf8116c61f4d811a75817350ba469d2a282a0c1740478703a781d484870b59",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "5705ee1e6c9892100dbbc9602c7227149d44b81671a42310f6e51da5d8380479",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
    ("checkpoints", "sqlite"): [
        "61426ceab74aa6be50580e127e9705f897991933859ff15845c9298e89b5d6cc",
        "95d74343eabdca1101219f9609f38a524326ed7cb5ee2068e7e1400d8cebb4e7",
        "7dde4be558705eab8eb9ad78e68abfcf1c22e022fc456fa67e5b5a54fb90ce23",
        "a6fd4e31a5076cfcdfc085cbdc4d613308735020c86ba54423b9a8574e7c7e5c",
        "282c170d491aa0dca0749436faf140fc462155ff307453880464ff77d4598f68",
        "2202e33c03703a04442d0b8f96a75b0937453ecf525220560ed170c41baec2c3",
        "2968133341886f614e607db67b4ca23553fe154c3a2ea07fcd4d70fc8b68603d",
        "60ccfba670c14c0778e231c52d94a332195dfd41b71e20263b6d89dc5dc34687",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "cd699194fcaa872c919d06362d798483db5367190ee997b3ee238d8df85a64d6",
        "b80e9a0d48048f9778e1315ce0b0076571a86b16dd13d7d8235716cabb3f16af",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "576c9a58cad596022db80aa4e794783904e72b7ed32a9344a9b8f19758f4ebed",
    ],
    ("checkpoints", "postgresql"): [
        "56fbcc879fa07925bc89835ec8dc2907477e87f25245c450945e04e765edea8f",
        "d3027fb5495807c28a9053db2e80e38ca40156a305f291f118979039f1926baa",
        "4a218632415152c9315b2efa0cc28956ecbedd3ac91ce5f2043aee684bf380c2",
        "a6fd4e31a5076cfcdfc085cbdc4d613308735020c86ba54423b9a8574e7c7e5c",
        "282c170d491aa0dca0749436faf140fc462155ff307453880464ff77d4598f68",
        "2202e33c03703a04442d0b8f96a75b0937453ecf525220560ed170c41baec2c3",
        "2968133341886f614e607db67b4ca23553fe154c3a2ea07fcd4d70fc8b68603d",
        "8b3be379e7d513b9ed6d81b77ccd9eaf6e7cf37c5cb6ab02ae677a57b0730530",
        "846f240d4f9cc78c634f5536e88cdc8c7e9ef50ce37a051eac62f717ed5311f4",
        "cd699194fcaa872c919d06362d798483db5367190ee997b3ee238d8df85a64d6",
        "f86ecf0650b7e190677494c7bb546695b38307acdf5ec33e79b688be91e9ff8c",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "576c9a58cad596022db80aa4e794783904e72b7ed32a9344a9b8f19758f4ebed",
    ],
    ("memories", "sqlite"): [
        "ef1c4dfb0e9f108d7d150db97280f42fc13cc9c4ee9a22f9b73f4a9a6199dce7",
        "f679f8f0cd83767389e69deb38d7926ba31bbb4c8aede7e8c7131441549d8aff",
        "a6ae6f60b0bf862714625345eeadf4e1e8cbce4c4d66cbf04a0d249f6ac988b3",
        "7ad762a213d157a3064085c06b33b6d97650f66a48c18a46464935489f185b00",
    ],
    ("memories", "postgresql"): [
        "e1f8b4b67fbbb3d73055a34df787282890f7e57994337245e7583761e3ce9cf1",
        "13cc00831794093adf8309da28dd3366a037d21bb67c138d372105d50589c925",
        "50ae149dcbce1a8de05648a21c2c776344ecbbc5d4fca4ed558d9de755a158a8",
        "7ad762a213d157a3064085c06b33b6d97650f66a48c18a46464935489f185b00",
    ],
}


def _steps(kind: str, dialect: Dialect) -> tuple[list[migrations.Step], Any]:
    """The kind's steps and the default tables they are built from."""
    if kind == "threads":
        return list(migrations.STEPS), build_tables()
    if kind == "checkpoints":
        return list(migrations.CHECKPOINT_STEPS), build_checkpoint_tables()
    return list(MEMORY_STEPS), build_memory_tables(dimensions=DIMENSIONS)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("kind", ["threads", "checkpoints", "memories"])
def test_released_steps_are_unchanged(kind: str, dialect: Dialect) -> None:
    """Every released step still hashes to the checksum databases made with it hold, and step
    1 is still the frozen first release."""
    steps, tables = _steps(kind, dialect)
    checksums = [step.checksum(tables, dialect) for step in steps]
    assert checksums == RELEASED[kind, dialect.name], (
        f"a released {kind} step changed: freeze its tables as they were and add a new step"
    )
    frozen = [s.format(p="memfold_", s="") for s in RELEASE_1["ddl"][kind][dialect.name]]
    assert hashlib.sha256("\n".join(frozen).encode()).hexdigest() == checksums[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def release_1(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The URL and store options of a database holding every SQL store kind's first released
    schema and rows."""
    with release_1_database(request.param, tmp_path) as found:
        yield found


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


def _tenant_columns(
    store: SQLThreadStore | SQLMemoryStore, table: str, key: str
) -> set[tuple[str, str, str]]:
    """``(tenant, thread or namespace key, id)`` of every row of ``table``, as stored."""
    schema = "" if store.tables.schema is None else f'"{store.tables.schema}".'
    name = f"{schema}{store.tables.base.prefix if table == 'memories' else store.tables.prefix}"
    if table == "messages":
        query = (
            f"SELECT m.tenant, t.{key}, m.message_id FROM {name}messages AS m "
            f"JOIN {name}threads AS t ON t.id = m.thread"
        )
    else:
        query = f"SELECT tenant, {key}, id FROM {name}memories"
    with store.engine.connect() as conn:
        return {tuple(row) for row in conn.execute(text(query))}  # type: ignore[misc]


def _only(store: SQLThreadStore | SQLCheckpointStore | SQLMemoryStore) -> SchemaSteps:
    [steps] = store.schema_steps()
    return steps


def test_a_release_1_thread_schema_upgrades_with_its_data(
    release_1: tuple[str, dict[str, Any]],
) -> None:
    """setup() moves first-release threads to the current schema: every message, thread,
    count, metadata and tenant boundary survives, search finds the old text, and the thread
    keeps growing in order afterwards."""
    url, options = release_1
    old_store = SQLThreadStore(url, **options)
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
    before = _only(old_store).status()
    assert (before.version, [p.version for p in before.pending]) == (1, [2, 3, 4, 5, 6, 7, 8, 9])

    assert old_store.setup() == migrations.STEPS[-1].version == 9
    assert old_store.setup() == 9  # idempotent
    assert _only(old_store).status().up_to_date
    assert _tenant_columns(old_store, "messages", "thread_id") == {
        ("acme", "t1", "m1"), ("acme", "t1", "m2"), ("acme", "t1", "m3"), ("rival", "t1", "m1"),
    }  # fmt: skip

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
    # Retention works on the upgraded schema (step 5): a thread's own TTL, and a sweep.
    assert old_store.set_thread_ttl("t1", 3600, tenant="acme")
    assert old_store.sweep(RetentionPolicy(keep_last=1), tenant="acme").messages == 2
    assert old_store.load("t1", tenant="acme") == added
    old_store.close()


def _write_as_step_7(store: SQLThreadStore, thread_id: str, messages: list[Message]) -> None:
    """Store a thread the way schema step 7 did: no first message time on the thread row."""
    schema = "" if store.tables.schema is None else f'"{store.tables.schema}".'
    prefix, now = f"{schema}{store.tables.prefix}", time.time()
    with store.engine.begin() as conn:
        key = conn.execute(
            text(
                f"INSERT INTO {prefix}threads (tenant, thread_id, created_at, updated_at, "
                "message_count, metadata) VALUES ('acme', :thread, :now, :now, :n, '{}') "
                "RETURNING id"
            ),
            {"thread": thread_id, "now": now, "n": len(messages)},
        ).scalar_one()
        for m in messages:
            body, created_us = json.dumps(m.to_dict(stored=True)), stored_time(m)
            conn.execute(
                text(
                    f"INSERT INTO {prefix}messages (thread, tenant, message_id, body, "
                    "created_us) VALUES (:key, 'acme', :id, :body, :us)"
                ),
                {"key": key, "id": m.id, "body": body, "us": created_us},
            )


def _first_times(store: SQLThreadStore) -> dict[str, int | None]:
    """Each thread's recorded first message time (schema step 7's ``first_us``)."""
    t = store.tables.threads
    with store.engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(select(t.c.thread_id, t.c.first_us))}


def test_a_step_7_thread_schema_gets_first_message_times(
    release_1: tuple[str, dict[str, Any]],
) -> None:
    """Step 8 records when each thread's first message was created, from the message's column
    (or, for a time only its body holds, a time before any, so a sweep reads the body): a
    max-age sweep then finds old messages in every thread, whenever it was created, and
    leaves the times exact; appends keep them."""
    url, options = release_1
    store = SQLThreadStore(url, **options)
    old, new = WHEN, datetime.now(UTC)
    legacy = [
        Message(role="user", content="old", id="m1", created_at=old),
        Message(role="user", content="new", id="m2", created_at=new),
    ]
    _write_as_release_1(store, "acme", "legacy", legacy)
    tables, first_seven = store.tables, migrations.STEPS[:7]
    steps = migrations.SQLSchemaSteps(store._runner, tables, tables, "threads", first_seven)
    assert [p.version for p in steps.upgrade().pending] == [2, 3, 4, 5, 6, 7]
    _write_as_step_7(store, "utc", [replace(m, id=f"u{m.id}") for m in legacy])
    zoned = [replace(m, created_at=m.created_at.astimezone(timezone(timedelta(hours=2))))  # type: ignore[union-attr]
             for m in legacy]  # fmt: skip
    _write_as_step_7(store, "zoned", zoned)
    _write_as_step_7(store, "empty", [])
    assert [p.version for p in _only(store).status().pending] == [8, 9]

    assert store.setup() == 9
    unknown = UNKNOWN_FIRST_US
    assert _first_times(store) == {
        "legacy": unknown, "utc": micros(old), "zoned": unknown, "empty": None,
    }  # fmt: skip
    policy = RetentionPolicy(max_age_seconds=86_400)
    planned = store.sweep(policy, dry_run=True)
    assert (planned.threads, planned.messages) == (0, 3)
    assert store.sweep(policy) == planned
    assert _first_times(store) == {
        "legacy": micros(new), "utc": micros(new), "zoned": micros(new), "empty": None,
    }  # fmt: skip
    assert [m.id for m in store.load("legacy", tenant="acme")] == ["m2"]
    assert [m.id for m in store.load("zoned", tenant="acme")] == ["m2"]
    store.append("empty", replace(legacy[0], id="e1"), tenant="acme")
    assert _first_times(store)["empty"] == micros(old)
    assert store.sweep(policy).messages == 1
    store.close()


async def test_a_release_1_checkpoint_schema_upgrades_with_its_data(
    release_1: tuple[str, dict[str, Any]],
) -> None:
    """asetup() gives first-release checkpoints the effect journal (step 2), tombstones (step 3),
    thread stamps (step 4), payload codecs (step 5), exact last writes (step 6, copied from
    the indexed time, so the TTL sweep finds idle threads as before), shared payloads
    (step 7), a sparse run index with SQLite's pending writes in key order (step 8),
    PostgreSQL's chain index on chain rows only (step 9), body codecs (step 10) and ids
    stored as bytes (step 11), the d1 codec tag (step 12) and journal origins (step 13):
    their chains of values, pending writes, bodies and tenants read back as stored, and new
    checkpoints (compressed payloads and bodies among them) and journal entries are recorded
    afterwards."""
    url, options = release_1
    store = SQLCheckpointStore(url, **options)
    before = await _only(store).astatus()
    assert (before.version, before.latest, [p.version for p in before.pending]) == (
        1,
        13,
        [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    )
    found = await _only(store).aupgrade()
    assert [p.version for p in found.pending] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert (await _only(store).aupgrade()).pending == ()  # nothing left to apply
    t = store.tables.threads
    with store.engine.connect() as conn:
        times = conn.execute(select(t.c.tenant, t.c.updated_us, t.c.last_us)).all()
    assert sorted(times) == [
        (row["tenant"], row["updated_us"], row["updated_us"])
        for row in RELEASE_1["rows"]["cp_threads"]
    ]
    idle = await store.asweep(RetentionPolicy(ttl_seconds=60), tenant="rival", dry_run=True)
    assert idle.threads == 1

    c2 = store.get("t1", tenant="acme")
    assert c2 is not None
    assert (c2.checkpoint_id, c2.parent_id, dict(c2.metadata)) == (
        "c2",
        "c1",
        {"run_id": "r1", "step": 2},
    )
    assert dict(c2.values) == {
        "messages": SequenceBlob("json", (b'"hi"', b'"hello"')),
        "topic": Blob("json", b'"tea"'),
    }
    assert [(w.task_id, w.channel, w.value.data, w.task_path) for w in c2.writes] == [
        ("task-1", "messages", b'"next"', "p")
    ]
    c1 = store.get("t1", checkpoint_id="c1", tenant="acme")
    assert c1 is not None
    assert c1.values["messages"] == SequenceBlob("json", (b'"hi"',))
    assert [c.checkpoint_id for c in store.list_checkpoints("t1", tenant="acme")] == ["c2", "c1"]
    rival = store.get("t1", tenant="rival")
    assert rival is not None
    assert (rival.checkpoint_id, rival.body) == ("other", Blob("json", b"{}"))

    journal = EffectJournal(store)
    entry = await journal.arecord("t1", "call-1", "refunded", origin="c2", tenant="acme")
    assert (entry.result, entry.origin) == ("refunded", "c2")
    assert await journal.aget("t1", "call-1", tenant="acme") == entry
    body = Blob("json", b'{"note": "%s"}' % (b"la " * 50))
    store.put("t1", "c3", body, parent_id="c2", tenant="acme")
    c3 = store.get("t1", tenant="acme")
    assert c3 is not None
    assert (c3.checkpoint_id, c3.body) == ("c3", body)
    long = SequenceBlob("json", (b'"hi"', b'"hello"', b'"%s"' % (b"la " * 200)))
    store.put(
        "t1", "c4", Blob("json", b"{}"), parent_id="c3", tenant="acme",
        versions={"messages": 3}, values={"messages": long},
    )  # fmt: skip
    assert store.get("t1", tenant="acme").values["messages"] == long  # type: ignore[union-attr]
    assert store.delete_for_runs(["r1"], tenant="acme") == 2  # the run index, made sparse
    assert [c.checkpoint_id for c in store.list_checkpoints("t1", tenant="acme")] == ["c4", "c3"]
    assert store.get("t1", tenant="acme").values["messages"] == long  # type: ignore[union-attr]
    await store.aclose()


def test_a_release_1_memory_schema_opens_with_its_data(
    release_1: tuple[str, dict[str, Any]],
) -> None:
    """setup() gives the first release's memory table tombstones (step 2), a tenant column
    filled from each namespace (step 3) and a creation-time index (step 4); its records are
    read, found by words and by vector, kept per tenant, and swept."""
    url, options = release_1
    store = SQLMemoryStore(url, dimensions=DIMENSIONS, **options)
    assert [p.version for p in _only(store).upgrade().pending] == [2, 3, 4]
    assert store.setup() == MEMORY_STEPS[-1].version == 4
    assert _tenant_columns(store, "memories", "ns") == {
        ("acme", "acme\x1fu1\x1f", "m1"), ("rival", "rival\x1fu2\x1f", "m2"),
    }  # fmt: skip
    record = store.get(("acme", "u1"), "m1")
    assert record is not None
    assert (record.text, dict(record.value), record.importance) == (
        "likes green tea",
        {"kind": "pref"},
        0.7,
    )
    assert [h.record.id for h in store.search(("acme",), "green tea", k=5)] == ["m1"]
    assert [h.record.id for h in store.search(("rival",), vector=[0.4, 0.3, 0.2, 0.1], k=5)] == [
        "m2"
    ]
    assert store.search(("acme",), "secret", k=5) == []
    store.put(("acme", "u1"), "prefers mornings", id="m3", embedding=[1.0, 0.0, 0.0, 0.0])
    assert store.count(("acme",)) == 2
    assert store.sweep(RetentionPolicy(keep_last=1), tenant="acme").records == 1
    assert [r.id for r in store.list_records(("acme",))] == ["m3"]
    store.close()


def _shared_talk(seed: int) -> bytes:
    """A JSON string of random words: hundreds of bytes even compressed, so a value row shares
    it rather than keep a copy."""
    rng = random.Random(seed)
    return b'"%s"' % " ".join(f"w{rng.randrange(10_000)}" for _ in range(60)).encode()


UUIDS = [str(uuid.UUID(int=(n << 64) + 7)) for n in (1, 2, 3)]
"""Canonical UUIDs as LangGraph makes them, in creation (and text) order."""
TEXT_IDS = ["a", "fifteen-bytes-x", "\u00e9-third"]
"""Other ids, in text order: one of 15 UTF-8 bytes (stored with two NULs), one non-ASCII."""


def _fill(store: SQLCheckpointStore) -> None:
    """Thread ``t``, ids all UUIDs, with list values sharing pending writes' payloads; thread
    ``u`` the same with other ids, its task id 16 bytes of text."""
    said = (_shared_talk(1), _shared_talk(2))
    for thread_id, ids, task in (("t", UUIDS, UUIDS[0]), ("u", TEXT_IDS, "sixteen-bytes-xx")):
        parent = None
        for n, cid in enumerate(ids):
            store.put(
                thread_id, cid, Blob("json", b"{}"), parent_id=parent, versions={"m": n + 1},
                values={"m": SequenceBlob("json", (b'"hi"', *said[:n]))},
            )  # fmt: skip
            if n < 2:
                grown = pack_sequence(SequenceBlob("json", said[n : n + 1]))
                store.put_writes(thread_id, cid, [PendingWrite(task, 0, "m", grown)])
            parent = cid


def _id_tables(store: SQLCheckpointStore) -> dict[str, Table]:
    """The tables holding checkpoint and task ids, by name after the prefix."""
    tables = store.tables
    return {
        "checkpoints": tables.checkpoints,
        "cp_values": tables.values,
        "cp_writes": tables.writes,
    }


def _rows(store: SQLCheckpointStore, ids_as_text: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables holding ids (those ids as text if asked)."""
    found = {}
    with store.engine.connect() as conn:
        for name, table in _id_tables(store).items():
            rows = [dict(r._mapping) for r in conn.execute(select(table))]
            for row in rows if ids_as_text else ():
                ids = migrations._BINARY_IDS[name]
                row.update({k: None if row[k] is None else id_text(row[k]) for k in ids})
            found[name] = sorted(rows, key=repr)
    return found


def _insert(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (column values by name) as given, whatever ``table`` declares."""
    name = conn.dialect.identifier_preparer.format_table(table)
    for row in rows:
        slots = ", ".join(f":{k}" for k in row)
        conn.execute(text(f"INSERT INTO {name} ({', '.join(row)}) VALUES ({slots})"), row)


@pytest.fixture(params=["sqlite", "postgresql"])
def step_10(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLCheckpointStore]:
    """A checkpoint store whose tables stand at step 10 (the last with text ids)."""
    if request.param == "sqlite":
        store = SQLCheckpointStore(f"sqlite:///{tmp_path / 'step-10.db'}")
    else:
        store = SQLCheckpointStore(PG_URL, schema=f"memfold_test_{uuid.uuid4().hex}")
    steps = migrations.SQLSchemaSteps(
        store._runner, store.tables.base, store.tables, "checkpoints",
        migrations.CHECKPOINT_STEPS[:10],
    )  # fmt: skip
    assert steps.upgrade().pending[-1].version == 10
    yield store
    store.close()
    drop_checkpoint_store(store)


def test_text_ids_become_bytes_and_read_back_as_stored(
    step_10: SQLCheckpointStore, tmp_path: Path
) -> None:
    """Step 11 turns the ids of a step-10 database into bytes exactly as memfold stores them
    now: UUIDs in 16, other ids (non-ASCII, 15 and 16 bytes of text) as text, and the links
    of shared payloads; checkpoints, writes, order, ``before=`` and new puts work after."""
    source = SQLCheckpointStore(f"sqlite:///{tmp_path / 'now.db'}")
    source.setup()
    _fill(source)
    old = step_10
    with old.engine.begin() as conn, source.engine.connect() as read:
        for name, rows in _rows(source, ids_as_text=True).items():
            _insert(conn, _id_tables(old)[name], rows)
        threads = [dict(r._mapping) for r in read.execute(select(source.tables.threads))]
        _insert(conn, old.tables.threads, threads)
    later = [step.version for step in migrations.CHECKPOINT_STEPS[10:]]
    assert [p.version for p in _only(old).upgrade().pending] == later
    stored = _rows(old)
    assert stored == _rows(source)
    assert {len(r["checkpoint_id"]) for r in stored["checkpoints"] if r["thread_id"] == "t"} == {16}
    assert {r["link_task"] for r in stored["cp_values"]} == {
        None, bytes.fromhex(UUIDS[0].replace("-", "")), b"sixteen-bytes-xx\x00"
    }  # fmt: skip
    for thread_id, ids in (("t", UUIDS), ("u", TEXT_IDS)):
        listed = old.list_checkpoints(thread_id)
        assert listed == source.list_checkpoints(thread_id)
        assert [c.checkpoint_id for c in listed] == ids[::-1]
        before = old.list_checkpoints(thread_id, before=ids[2])
        assert [c.checkpoint_id for c in before] == [ids[1], ids[0]]
        assert old.get(thread_id, checkpoint_id=ids[1]) == source.get(
            thread_id, checkpoint_id=ids[1]
        )
    longer = SequenceBlob("json", (b'"hi"', _shared_talk(1), _shared_talk(2), b'"bye"'))
    child = str(uuid.UUID(int=(4 << 64) + 7))
    old.put(
        "t", child, Blob("json", b"{}"), parent_id=UUIDS[2], versions={"m": 4},
        values={"m": longer},
    )  # fmt: skip
    newest = old.get("t")
    assert newest is not None
    assert (newest.checkpoint_id, newest.parent_id, newest.values["m"]) == (
        child,
        UUIDS[2],
        longer,
    )
    assert old.delete_thread("u") == 3
    source.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_journal_entries_of_step_12_name_no_origin(backend: str, tmp_path: Path) -> None:
    """Step 13 gives the journal its ``origin`` column: an entry recorded before reads back
    with "" (so `EffectJournal.recall` finds it only under its own namespace), and new entries
    keep theirs."""
    if backend == "sqlite":
        store = SQLCheckpointStore(f"sqlite:///{tmp_path / 'step-12.db'}")
    else:
        store = SQLCheckpointStore(PG_URL, schema=f"memfold_test_{uuid.uuid4().hex}")
    try:
        steps = migrations.SQLSchemaSteps(
            store._runner, store.tables.base, store.tables, "checkpoints",
            migrations.CHECKPOINT_STEPS[:12],
        )  # fmt: skip
        assert steps.upgrade().pending[-1].version == 12
        row = {
            "tenant": "default", "thread_id": "t", "namespace": "tools:1", "tool_call_id": "c",
            "tag": "json", "data": b'"paid"', "recorded_us": 1_700_000_000_000_000,
        }  # fmt: skip
        with store.engine.begin() as conn:
            _insert(conn, store.tables.journal, [row])
        assert [p.version for p in _only(store).upgrade().pending] == [13]
        journal = EffectJournal(store)
        old = journal.get("t", "c", namespace="tools:1")
        assert old is not None
        assert (old.result, old.origin) == ("paid", "")
        assert journal.recall("t", "c", namespace="tools:2", origin="c9") is None
        assert journal.record("t", "d", 1, origin="c9").origin == "c9"
        assert [e.origin for e in journal.list_entries("t")] == ["", "c9"]
    finally:
        store.close()
        drop_checkpoint_store(store)
