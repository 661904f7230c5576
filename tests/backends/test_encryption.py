"""Encryption at rest and key rotation on every backend of every store kind, sync and async:
round trips, typed errors for missing or wrong keys, storage that holds no plaintext, and
rotation that leaves everything readable under the new key alone."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from memfold import (
    EncryptionError,
    InvalidInput,
    Message,
    Part,
    ToolCall,
    UnsupportedOperation,
)
from memfold import ops as thread_ops
from memfold.checkpoint_history import channel_history
from memfold.checkpoints import BaseCheckpointStore, Blob, PendingWrite, SequenceBlob
from memfold.encryption import (
    ENCRYPTED_KEY,
    ENCRYPTED_PART,
    ENCRYPTED_TAG,
    ENCRYPTED_TEXT,
    Keyring,
    effect_key_id,
    sealed_key_ids,
)
from memfold.export import export_data
from memfold.flows import arun, run
from memfold.importer import import_data
from memfold.journal import EffectJournal, JournalEntry, ListEffects
from memfold.memories import BaseMemoryStore, MemoryRecord
from memfold.recall.embedders import HashingEmbedder
from memfold.redaction import Redactor
from memfold.stores import BaseThreadStore
from tests.backends.test_checkpoints import CHECKPOINT_BACKENDS, make_checkpoint_store
from tests.backends.test_redaction import EVERY_MEMORY_BACKEND, RecordingEmbedder
from tests.support import (
    MEMORY_DIMS,
    PG_URL,
    REDIS_URL,
    Api,
    drop_checkpoint_store,
    make_memory_store,
)

SECRET = "the vault code is 4-8-15-16-23-42"
K1, K2 = Keyring.generate_key(), Keyring.generate_key()


def keyring(*ids: str) -> Keyring:
    """A keyring of the test keys named, the first active."""
    keys = {"k1": K1, "k2": K2}
    return Keyring({i: keys[i] for i in ids})


def raw_storage(store: Any, tmp_path: Path) -> bytes:
    """Everything a store keeps outside this process, as bytes: its files, its PostgreSQL
    schema's rows, or its Redis keys (nothing for the in-process backend)."""
    if store.name == "tiered":
        return raw_storage(store.hot, tmp_path) + raw_storage(store.durable, tmp_path)
    if store.name in ("sqlite", "chroma"):
        return b"".join(p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file())
    if store.name == "postgresql":
        import psycopg
        from psycopg import sql

        schema = store.tables.schema
        out = []
        with psycopg.connect(PG_URL) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
            for (table,) in tables:
                query = sql.SQL("SELECT CAST(t AS text) FROM {}.{} AS t").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                out += [row[0] for row in conn.execute(query)]
        return "\n".join(out).encode()
    if store.name == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        out = []
        for key in client.scan_iter(match=f"{store.key_prefix}*", count=1000):
            kind = client.type(key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"hash":
                out += [k + v for k, v in client.hgetall(key).items()]
            elif kind == b"zset":
                out += client.zrange(key, 0, -1)
            elif kind == b"set":
                out += list(client.smembers(key))
            elif kind == b"list":
                out += client.lrange(key, 0, -1)
        client.close()
        return b"\n".join(out)
    return b""


def holds(raw: bytes, text: str) -> bool:
    """Whether ``raw`` holds ``text`` as UTF-8, or hex-encoded as PostgreSQL prints bytea."""
    data = text.encode()
    return data in raw or data.hex().encode() in raw


# Threads.


def rich_messages() -> list[Message]:
    return [
        Message(role="user", content=f"psst: {SECRET}", metadata={"channel": "web"}),
        Message(
            role="assistant",
            content=(Part(type="text", text=f"noted {SECRET}"), Part(type="image", url="u")),
            tool_calls=(ToolCall("c1", "save_code", {"code": SECRET, "n": [1, 2.5]}),),
        ),
        Message(role="tool", content=f"saved {SECRET}", tool_call_id="c1", name="save_code"),
    ]


async def test_threads_round_trip_encrypted_and_hold_no_plaintext(api: Api, tmp_path: Path) -> None:
    """Messages (text, parts, tool arguments) round-trip exactly through a keyring; what the
    backend stores, and its raw storage, hold none of their text; search is turned off."""
    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    assert store.capabilities.encrypted
    assert not store.capabilities.full_text_search
    stored = await api.append("t", rich_messages())
    assert [m.content for m in stored] == [m.content for m in rich_messages()]
    loaded = await api.load("t")
    assert loaded == stored
    assert await api.load("t", last=1) == stored[-1:]
    assert await api.delete_messages("t", [stored[2].id]) == stored[2:]
    backend_view = store.execute(thread_ops.LoadThread("default", "t"))
    assert sealed_key_ids(backend_view) == {"k1"}
    assert not any(SECRET in m.to_json() for m in backend_view)
    assert [m.tool_calls[0].name for m in backend_view[1:2]] == ["save_code"]  # names stay
    assert not holds(raw_storage(store, tmp_path), SECRET)
    assert not holds(raw_storage(store, tmp_path), "vault")
    with pytest.raises(UnsupportedOperation):
        await api.search("vault")


async def test_metadata_that_holds_content_is_encrypted_with_it(api: Api, tmp_path: Path) -> None:
    """The metadata keys where the framework adapters keep content (a tool's artifact, the
    model's raw or unparsable tool-call arguments: `memfold.model.CONTENT_METADATA`) are
    encrypted with the content and read back as given; the app's own metadata stays readable.
    (They were stored in plaintext; found by fuzzing encryption.)"""
    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    messages = [
        Message(
            role="assistant",
            content="",
            metadata={
                "llama_index.raw_tool_kwargs": [f'{{"code": "{SECRET}"}}'],
                "langchain.invalid_tool_calls": [{"id": "c2", "args": f'{{"code": "{SECRET}"'}],
            },
        ),
        Message(
            role="tool",
            content="saved",
            tool_call_id="c1",
            metadata={"langchain.artifact": {"code": SECRET}, "channel": "web"},
        ),
    ]
    stored = await api.append("t", messages)
    assert [m.metadata for m in await api.load("t")] == [m.metadata for m in messages]
    assert [m.metadata for m in stored] == [m.metadata for m in messages]
    backend_view = store.execute(thread_ops.LoadThread("default", "t"))
    assert [m.metadata for m in backend_view] == [{}, {"channel": "web"}]
    assert sealed_key_ids(backend_view) == {"k1"}
    assert not holds(raw_storage(store, tmp_path), "vault")


async def test_rotation_encrypts_content_metadata_stored_before_it_was(api: Api) -> None:
    """Messages encrypted before content metadata was (their stored metadata holds
    `memfold.model.CONTENT_METADATA` keys in plaintext) are rewritten by a rotation, even
    under the same key: the keys move into the ciphertext and read back unchanged."""
    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    [stored] = await api.append("t", [Message(role="tool", content="ok", tool_call_id="c1")])
    [sealed] = store.execute(thread_ops.LoadThread("default", "t"))
    old = replace(sealed, metadata={"langchain.artifact": {"code": SECRET}, "channel": "web"})
    body = json.dumps(old.to_dict(stored=True))
    store.execute(thread_ops.UpdateMessages("default", "t", (old,), (body,), keep_times=True))
    assert await api.rotate_key() == 1
    [now] = store.execute(thread_ops.LoadThread("default", "t"))
    assert now.metadata == {"channel": "web"}
    assert sealed_key_ids([now]) == {"k1"}
    assert (await api.load("t"))[0].metadata == old.metadata
    assert await api.rotate_key() == 0
    assert [m.content for m in await api.load("t")] == [stored.content]


async def test_threads_refuse_to_read_without_the_right_key(api: Api) -> None:
    """Reading encrypted messages with no keyring, without their key, or with another key
    under their id raises EncryptionError naming the key id."""
    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    await api.append("t", rich_messages())
    store.keyring = None
    with pytest.raises(EncryptionError, match=r"'k1'.*no keyring"):
        await api.load("t")
    store.keyring = keyring("k2")
    with pytest.raises(EncryptionError, match="key 'k1', which this keyring lacks"):
        await api.load("t")
    store.keyring = Keyring({"k1": K2})
    with pytest.raises(EncryptionError, match="does not decrypt with key 'k1'"):
        await api.load("t")
    store.keyring = keyring("k2", "k1")  # the old key is enough to read
    assert [m.role for m in await api.load("t")] == ["user", "assistant", "tool"]


async def test_thread_rotation_rewrites_every_message_under_the_new_key(api: Api) -> None:
    """Rotation re-encrypts old-key and plain messages in pages, keeping ids, order, times and
    metadata; afterwards the new key alone reads everything, and a second run rewrites none."""
    store: BaseThreadStore = api.store
    await api.append("plain", [Message(role="user", content=f"p{i}") for i in range(3)])
    store.keyring = keyring("k1")
    for n in range(3):
        await api.append(f"t{n}", [Message(role="user", content=f"m{i}") for i in range(7)])
    await api.append("t0", rich_messages(), tenant="acme")
    before = {t: await api.load(t) for t in ("plain", "t0", "t1", "t2")}
    store.keyring = keyring("k2", "k1")
    seen: list[tuple[int, int]] = []
    assert await api.rotate_key(batch_size=4, progress=lambda d, t: seen.append((d, t))) == 24
    assert seen[-1] == (24, 24)
    assert await api.rotate_key(batch_size=4) == 0
    store.keyring = keyring("k2")
    assert {t: await api.load(t) for t in before} == before
    stored = store.execute(thread_ops.LoadThread("default", "t1"))
    assert sealed_key_ids(stored) == {"k2"}
    store.keyring = keyring("k2", "k1")
    assert await api.rotate_key(tenant="acme") == 3  # tenants rotate one at a time
    store.keyring = keyring("k2")
    assert len(await api.load("t0", tenant="acme")) == 3


async def test_thread_rotation_keeps_thread_times_and_order(api: Api) -> None:
    """Rotating messages and a sealed summary leaves each thread's creation and update times,
    so threads list in the same order and a TTL sweep still finds the idle ones (the rewrites
    stamped the rotation time)."""
    from memfold.compaction import RECORD_KEY

    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    for thread_id in ("old", "new"):
        await api.append(thread_id, [Message(role="user", content=f"secret {thread_id}")])
    summary = {RECORD_KEY: {"summary": "sealed"}, "user_id": "ana"}
    await api.set_thread_metadata("old", summary)
    before = await api.list_threads()
    assert [t.thread_id for t in before] == ["old", "new"]
    store.keyring = keyring("k2", "k1")
    assert await api.rotate_key() == 2
    store.keyring = keyring("k2")
    assert await api.list_threads() == before


async def test_threads_refuse_what_looks_encrypted(api: Api) -> None:
    """A message with a part of the type memfold keeps ciphertexts in, or a compaction summary
    holding the key of an encrypted value, is refused with InvalidInput before anything is
    written, with or without a keyring, so the thread stays readable."""
    from memfold.compaction import RECORD_KEY

    store: BaseThreadStore = api.store
    await api.append("t", Message(role="user", content="hi"))
    posing = Message(role="user", content=(Part(ENCRYPTED_PART, data="x"),))
    mixed = Message(role="user", content=(Part("text", text="a"), Part(ENCRYPTED_PART, data="x")))
    for keys in (None, keyring("k1")):
        store.keyring = keys
        for messages in ([posing], [Message(role="user", content="ok"), mixed]):
            with pytest.raises(InvalidInput, match="reserves"):
                await api.append("t", messages)
            with pytest.raises(InvalidInput, match="reserves"):
                await api.replace("t", messages)
        with pytest.raises(InvalidInput, match="reserves"):
            await api.set_thread_metadata("t", {RECORD_KEY: {ENCRYPTED_KEY: "x", "n": 1}})
    store.keyring = None
    assert [m.content for m in await api.load("t")] == ["hi"]
    assert (await api.get_thread("t")).metadata == {}


class Stop(Exception):
    """Stands in for a rotation's process dying part way."""


async def test_thread_rotation_resumed_after_an_interruption_keeps_thread_times(
    api: Api,
) -> None:
    """A rotation that stopped after its first page, then ran again, leaves each thread's
    times as they were: its rewrites are no writes (list order and TTL sweeps stay)."""
    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    await api.append("idle", [Message(role="user", content=f"m{i}") for i in range(6)])
    await api.append("fresh", [Message(role="user", content="x")])
    before = await api.list_threads()
    store.keyring = keyring("k2", "k1")

    def stop(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        await api.rotate_key(batch_size=4, progress=stop)
    assert await api.rotate_key(batch_size=4) == 6
    store.keyring = keyring("k2")
    assert await api.list_threads() == before


async def test_thread_rotation_keeps_writes_made_while_it_runs(api: Api) -> None:
    """Metadata set and a message appended while a rotation reads its pages stay: the sealed
    summary is resealed in the metadata as it is then, under the thread's times then."""
    from memfold.compaction import RECORD_KEY

    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    await api.append("t", [Message(role="user", content=f"m{i}") for i in range(4)])
    await api.set_thread_metadata("t", {RECORD_KEY: {"summary": "s"}, "user_id": "ann"})
    store.keyring = keyring("k2", "k1")
    later = {RECORD_KEY: {"summary": "s"}, "user_id": "ann", "plan": "pro"}

    def app_writes(done: int, total: int) -> None:  # another process, meanwhile
        if done == 2:
            store.set_thread_metadata("t", later)
            store.append("t", Message(role="user", content="late"))

    assert await api.rotate_key(batch_size=2, progress=app_writes) == 4
    store.keyring = keyring("k2")
    info = await api.get_thread("t")
    assert (info.metadata, info.message_count) == (later, 5)
    assert info.updated_at >= (await api.load("t"))[-1].created_at


async def test_rotation_needs_a_keyring(api: Api) -> None:
    """A store without a keyring refuses to rotate."""
    with pytest.raises(Exception, match="needs a store opened with a keyring"):
        await api.rotate_key()


def test_keyring_and_redaction_come_from_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``?keyring=env`` reads MEMFOLD_KEYS (the first key active); together with
    ``redact=default`` messages are redacted, then encrypted."""
    import memfold

    monkeypatch.setenv("MEMFOLD_KEYS", keyring("k2", "k1").to_text())
    store = memfold.open_store(f"sqlite:///{tmp_path / 'k.db'}?keyring=env&redact=email")
    assert store.keyring is not None
    assert store.keyring.active == "k2"
    store.append("t", Message(role="user", content=f"bob@example.com {SECRET}"))
    assert store.load("t")[0].content == f"[email] {SECRET}"
    raw = raw_storage(store, tmp_path)
    assert not holds(raw, SECRET)
    assert not holds(raw, "bob@example.com")


# Long-term memories.


@pytest.fixture(params=EVERY_MEMORY_BACKEND)
async def sealed_memories(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[BaseMemoryStore, RecordingEmbedder]]:
    """A memory store of each backend with keyring k1 and a recording embedder."""
    embedder = RecordingEmbedder()
    store = make_memory_store(str(request.param), tmp_path, embedder=embedder)
    store.keyring = keyring("k1")
    yield store, embedder
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops the test schema or keys


@pytest.mark.parametrize("use_async", [False, True])
async def test_memories_round_trip_encrypted_and_search_by_vector(
    sealed_memories: tuple[BaseMemoryStore, RecordingEmbedder], use_async: bool, tmp_path: Path
) -> None:
    """Text and value round-trip through the keyring and are stored encrypted; vectors are
    made from the plaintext first, so search by meaning still finds them; text ranking and
    value filters are refused, and a wrong key raises EncryptionError."""
    store, embedder = sealed_memories
    api = Api(store, use_async)  # type: ignore[arg-type]
    ns = ("acme", "u1")
    tea = await api.put(ns, "prefers green tea in the vault", {"code": SECRET, "n": 2})
    await api.put(ns, "works on billing invoices", {"kind": "fact"})
    assert tea.text == "prefers green tea in the vault"
    assert tea.value == {"code": SECRET, "n": 2}
    assert embedder.seen[:1] == (["prefers green tea in the vault"] if embedder.seen else [])
    assert await api.get(ns, tea.id) == replace(tea, embedding=None)
    assert replace(tea, embedding=None) in await api.list_records(("acme",))
    assert store.capabilities.encrypted
    assert not store.capabilities.full_text_search
    if store.capabilities.vector_search:
        [hit] = await api.search(ns, "green tea", k=1)
        assert hit.record.value == tea.value
        assert hit.text_score is None
    with pytest.raises(UnsupportedOperation):
        await api.search(ns, "green tea", text_weight=1.0, vector_weight=0.0)
    with pytest.raises(UnsupportedOperation):
        await api.list_records(ns, filter={"n": 2})
    raw = raw_storage(store, tmp_path)
    assert not holds(raw, SECRET)
    assert not holds(raw, "green tea")
    stored = store.execute(_get_raw(store, ns, tea.id))
    assert SECRET not in repr(stored)
    store.keyring = keyring("k2")
    with pytest.raises(EncryptionError, match="'k1'"):
        await api.get(ns, tea.id)
    store.keyring = None
    with pytest.raises(EncryptionError, match="no keyring"):
        await api.list_records(ns)


@pytest.mark.parametrize("backend", EVERY_MEMORY_BACKEND)
@pytest.mark.parametrize("use_async", [False, True])
async def test_encrypted_memories_without_an_embedder_refuse_a_text_search(
    backend: str, use_async: bool, tmp_path: Path
) -> None:
    """An encrypted store ranks by vectors alone, so without an embedder a text query raises
    UnsupportedOperation rather than finding nothing; with ``vector=`` it searches."""
    store = make_memory_store(backend, tmp_path, embedder=None, dimensions=MEMORY_DIMS)
    store.keyring = keyring("k1")
    api = Api(store, use_async)  # type: ignore[arg-type]
    vector = HashingEmbedder(MEMORY_DIMS).embed(["green tea lover"])[0]
    searches_vectors = store.capabilities.vector_search
    await api.put(("acme", "u"), "green tea lover", embedding=vector if searches_vectors else None)
    with pytest.raises(UnsupportedOperation):
        await api.search(("acme",), "tea")
    if searches_vectors:
        with pytest.raises(UnsupportedOperation, match="give it an embedder or pass vector="):
            await api.search(("acme",), "tea", vector_weight=1.0)
        [hit] = await api.search(("acme",), "tea", vector=vector, k=1)
        assert hit.record.text == "green tea lover"
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", EVERY_MEMORY_BACKEND)
@pytest.mark.parametrize("use_async", [False, True])
async def test_memories_refuse_what_looks_encrypted(
    backend: str, use_async: bool, tmp_path: Path
) -> None:
    """A value with the key of an encrypted value, or text starting as an encrypted text does,
    is refused with InvalidInput before anything is written, so the namespace stays readable;
    a value an earlier release stored with that key beside others reads as plain, and rotation
    encrypts it."""
    store = make_memory_store(backend, tmp_path)
    api = Api(store, use_async)  # type: ignore[arg-type]
    ns = ("acme", "u1")
    kept = await api.put(ns, "Ann likes tea")
    for keys in (None, keyring("k1")):
        store.keyring = keys
        with pytest.raises(InvalidInput, match="reserves"):
            await api.put(ns, "imported note", {ENCRYPTED_KEY: "no", "source": "crm"})
        with pytest.raises(InvalidInput, match="reserves"):
            await api.put(ns, ENCRYPTED_TEXT + "AAAA")
        with pytest.raises(InvalidInput, match="reserves"):
            await api.restore_many([replace(kept, id="r2", value={ENCRYPTED_KEY: "x"})])
    store.keyring = None
    assert [r.text for r in await api.list_records(ns)] == ["Ann likes tea"]
    legacy = MemoryRecord(ns, "legacy", "old note", {ENCRYPTED_KEY: "no", "source": "crm"})
    store.execute(store._put_op([legacy], [], [], None))  # as an earlier release let it in
    listed = await api.list_records(ns)
    assert [r.value for r in listed] == [{}, legacy.value]
    store.keyring = keyring("k1")
    assert await api.rotate_key(("acme",)) == 2
    assert await api.list_records(ns) == listed
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]


def _get_raw(store: BaseMemoryStore, ns: tuple[str, ...], record_id: str) -> Any:
    from memfold import memory_ops
    from memfold.memories import namespace_key
    from memfold.model import utcnow

    return memory_ops.GetMemories(namespace_key(ns), (record_id,), utcnow())


async def test_memories_are_redacted_then_embedded_then_encrypted(
    sealed_memories: tuple[BaseMemoryStore, RecordingEmbedder], tmp_path: Path
) -> None:
    """With both a redactor and a keyring, the embedder sees the redacted plaintext and the
    storage holds neither the secret nor the redacted text."""
    store, embedder = sealed_memories
    store.redactor = Redactor()
    record = store.put(("acme", "u2"), "mail bob@example.com about the vault")
    assert record.text == "mail [email] about the vault"
    if store.capabilities.vector_search:
        assert embedder.seen == ["mail [email] about the vault"]
    raw = raw_storage(store, tmp_path)
    assert not holds(raw, "bob@example.com")
    assert not holds(raw, "about the vault")


@pytest.mark.parametrize("use_async", [False, True])
async def test_memory_rotation_keeps_times_vectors_and_ttls(
    sealed_memories: tuple[BaseMemoryStore, RecordingEmbedder], use_async: bool
) -> None:
    """Rotation rewrites old-key and plain records under the new key, keeping their times,
    vectors and TTLs, so the new key alone reads them and search ranks them as before."""
    store, _ = sealed_memories
    api = Api(store, use_async)  # type: ignore[arg-type]
    store.keyring = None
    plain = await api.put(("acme", "p"), "plain words", {"i": -1})
    store.keyring = keyring("k1")
    for i in range(9):
        await api.put(("acme", f"u{i % 3}"), f"memory number {i}", {"i": i}, ttl_seconds=3600)
    before = await api.list_records(("acme",), limit=100, include_embedding=True)
    store.keyring = keyring("k2", "k1")
    assert await api.rotate_key(("acme",), batch_size=4) == 10
    assert await api.rotate_key(("acme",), batch_size=4) == 0
    store.keyring = keyring("k2")
    after = await api.list_records(("acme",), limit=100, include_embedding=True)
    assert after == before
    assert replace(plain, embedding=None) in await api.list_records(("acme", "p"))
    if store.capabilities.vector_search:
        [hit] = await api.search(("acme",), "memory number 4", k=1)
        assert hit.record.value == {"i": 4}


@pytest.mark.parametrize("use_async", [False, True])
async def test_sqlite_rotation_leaves_no_plain_word_in_the_search_index(
    tmp_path: Path, use_async: bool
) -> None:
    """Encrypting SQLite stores whose words were indexed for search leaves none of them in the
    FTS5 index or the file (threads and memories), also when a run stopped part way."""
    from memfold import open_store

    threads = open_store(f"sqlite:///{tmp_path / 'threads.db'}")
    for n in range(2):
        threads.append(f"t{n}", [Message(role="user", content=f"hello zebrathread{n}")])
    assert threads.search("zebrathread0")  # indexes the words
    memories = make_memory_store("sqlite", tmp_path)
    memories.put(("acme", "u"), "likes zebramemory tea")
    assert memories.search(("acme",), "zebramemory", k=1, text_weight=1.0)
    threads.keyring = memories.keyring = keyring("k1")
    t_api, m_api = Api(threads, use_async), Api(memories, use_async)  # type: ignore[arg-type]

    def stop(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        await t_api.rotate_key(batch_size=1, progress=stop)
    assert await t_api.rotate_key() == 1
    assert await m_api.rotate_key(("acme",)) == 1
    await t_api.close()
    await m_api.close()
    for name, word in (("threads.db", "zebrathread"), ("memories.db", "zebramemory")):
        assert word.encode() not in (tmp_path / name).read_bytes()


# Checkpoints.


@pytest.fixture(params=CHECKPOINT_BACKENDS)
async def sealed_checkpoints(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseCheckpointStore]:
    """A checkpoint store of each backend with keyring k1."""
    store = make_checkpoint_store(str(request.param), tmp_path)
    store.keyring = keyring("k1")
    yield store
    await store.aclose()
    drop_checkpoint_store(store)


def item(i: int) -> bytes:
    return f'{{"role":"ai","content":"step {i}: {SECRET} {"x" * 200}"}}'.encode()


async def put_run(api: Api, thread: str, steps: int, first: int = 0) -> list[bytes]:
    """A run whose message list grows by one item a step, with a pending write each step."""
    items = [item(i) for i in range(first)]
    for i in range(first, first + steps):
        items.append(item(i))
        values: dict[str, Any] = {"messages": SequenceBlob("json", tuple(items))}
        if i == 0:
            values["config"] = Blob("json", f'"{SECRET}"'.encode())
        await api.put(
            thread, f"c{i:04d}", Blob("json", f'{{"step":{i},"s":"{SECRET}"}}'.encode()),
            parent_id=None if i == 0 else f"c{i - 1:04d}",
            versions={"messages": i + 1, "config": 1}, values=values,
            metadata={"step": i},
        )  # fmt: skip
        write = PendingWrite(f"task-{i}", 0, "messages", Blob("json", SECRET.encode()))
        await api.put_writes(thread, f"c{i:04d}", [write])
    return items


@pytest.mark.parametrize("use_async", [False, True])
async def test_checkpoints_round_trip_encrypted_and_stay_deltas(
    sealed_checkpoints: BaseCheckpointStore, use_async: bool, tmp_path: Path
) -> None:
    """Bodies, values and pending writes round-trip; storage holds no plaintext; list values
    stay appended deltas, so bytes stored grow only by the per-item overhead."""
    api = Api(sealed_checkpoints, use_async)  # type: ignore[arg-type]
    items = await put_run(api, "t", 24)
    latest = await api.get("t")
    assert latest.values["messages"] == SequenceBlob("json", tuple(items))
    assert latest.values["config"] == Blob("json", f'"{SECRET}"'.encode())
    assert latest.body == Blob("json", f'{{"step":23,"s":"{SECRET}"}}'.encode())
    assert [w.value.data for w in latest.writes] == [SECRET.encode()]
    flow = channel_history(sealed_checkpoints, "t", ["messages"], checkpoint_id="c0005")
    history = (await arun(flow) if use_async else run(flow))["messages"]
    assert [w.value for w in history.writes] == [Blob("json", SECRET.encode())]
    assert history.seed == SequenceBlob("json", tuple(items[:5]))
    listed = await api.list_checkpoints("t")
    assert [c.metadata["step"] for c in listed] == list(range(23, -1, -1))
    assert listed[5].values["messages"].items == tuple(items[:19])
    assert not holds(raw_storage(sealed_checkpoints, tmp_path), SECRET)
    sealed = await api.stats("t")
    plain_store = make_checkpoint_store("memory", tmp_path)
    await put_run(Api(plain_store, use_async), "t", 24)
    plain = plain_store.stats("t")
    assert sealed.blobs == plain.blobs  # as many rows: still deltas, not snapshots
    overhead = (sealed.value_bytes - plain.value_bytes) / plain.value_bytes
    per_item = (1 + 1 + 2 + 12 + 16) / len(items[-1])
    assert overhead < per_item * 1.1 + 0.01


async def test_checkpoints_refuse_to_read_without_the_right_key(
    sealed_checkpoints: BaseCheckpointStore,
) -> None:
    """A missing keyring, a missing key or a wrong key raise EncryptionError naming it."""
    api = Api(sealed_checkpoints, False)
    await put_run(api, "t", 2)
    sealed_checkpoints.keyring = None
    with pytest.raises(EncryptionError, match=r"'k1'.*no keyring"):
        await api.get("t")
    with pytest.raises(EncryptionError, match=r"'k1'.*no keyring"):  # not the sealed bytes
        run(channel_history(sealed_checkpoints, "t", ["messages"]))
    sealed_checkpoints.keyring = keyring("k2")
    with pytest.raises(EncryptionError, match="which this keyring lacks"):
        await api.list_checkpoints("t")
    sealed_checkpoints.keyring = Keyring({"k1": K2})
    with pytest.raises(EncryptionError, match="does not decrypt"):
        await api.get("t")


@pytest.mark.parametrize("use_async", [False, True])
async def test_checkpoint_rotation_rewrites_values_and_writes_under_the_new_key(
    sealed_checkpoints: BaseCheckpointStore, use_async: bool
) -> None:
    """Rotation rewrites every checkpoint parent first (ids, parents, times, metadata kept),
    replaces the pending writes and sweeps the old rows: the new key alone reads it all, the
    bytes stored stay the same, and the run continues under the new key."""
    store = sealed_checkpoints
    api = Api(store, use_async)  # type: ignore[arg-type]
    await put_run(api, "t", 12)
    await put_run(api, f"other-{uuid.uuid4().hex[:6]}", 3)
    before = await api.list_checkpoints("t")
    stats = await api.stats("t")
    store.keyring = keyring("k2", "k1")
    seen: list[int] = []
    assert await api.rotate_key(progress=lambda done, total: seen.append(total)) == 15
    assert seen[-1] == 15
    assert await api.rotate_key() == 0
    store.keyring = keyring("k2")
    assert await api.list_checkpoints("t") == before
    assert await api.stats("t") == stats
    items = await put_run(api, "t", 2, first=12)  # continues as deltas under k2
    assert (await api.get("t")).values["messages"].items == tuple(items)


@pytest.mark.parametrize("use_async", [False, True])
async def test_checkpoint_rotation_resumed_after_its_last_rewrite_still_sweeps(
    sealed_checkpoints: BaseCheckpointStore, use_async: bool, tmp_path: Path
) -> None:
    """A rotation that encrypts a plain store and stops after its last rewrite, before its
    sweep, is finished by running it again: the plain rows go although nothing is rewritten."""
    store = sealed_checkpoints
    api = Api(store, use_async)  # type: ignore[arg-type]
    store.keyring = None
    await put_run(api, "t", 3)
    stats = await api.stats("t")
    store.keyring = keyring("k1")

    def stop(done: int, total: int) -> None:
        if done == total:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await api.rotate_key(progress=stop)
    assert await api.rotate_key() == 0
    assert (await api.stats("t")).blobs == stats.blobs  # no value row left behind
    if store.name == "sqlite":
        store.close()  # the deleted rows' pages leave the write-ahead log
    assert not holds(raw_storage(store, tmp_path), SECRET)


# Effect journal entries.

TOOL_RESULT = {"card": f"4111 {SECRET}"}


def stored_entries(store: BaseCheckpointStore, thread: str) -> list[JournalEntry]:
    """A thread's journal entries as the backend holds them (not decrypted)."""
    return store.execute(ListEffects("default", thread, None))


@pytest.mark.parametrize("use_async", [False, True])
async def test_journal_results_round_trip_encrypted(
    sealed_checkpoints: BaseCheckpointStore, use_async: bool, tmp_path: Path
) -> None:
    """Recorded results (JSON and typed bytes) are stored encrypted, keys readable, and read
    back decrypted through get, list_entries and a repeated record."""
    store = sealed_checkpoints
    api = Api(EffectJournal(store), use_async)  # type: ignore[arg-type]
    first = await api.record("t", "call-1", TOOL_RESULT, namespace="tools:1")
    typed = Blob("msgpack", SECRET.encode())
    await api.record("t", "call-2", typed)
    assert first.result == TOOL_RESULT
    assert (await api.get("t", "call-1", namespace="tools:1")).result == TOOL_RESULT
    assert (await api.record("t", "call-1", {"other": 1}, namespace="tools:1")) == first
    listed = await api.list_entries("t")
    assert [e.result for e in listed] == [TOOL_RESULT, typed]
    raw = stored_entries(store, "t")
    assert [(e.namespace, e.tool_call_id) for e in raw] == [("tools:1", "call-1"), ("", "call-2")]
    assert [e.value.tag for e in raw] == ["json" + ENCRYPTED_TAG, "msgpack" + ENCRYPTED_TAG]
    assert all(SECRET.encode() not in e.value.data for e in raw)
    assert not holds(raw_storage(store, tmp_path), SECRET)


async def test_journal_results_refuse_to_read_without_the_right_key(
    sealed_checkpoints: BaseCheckpointStore,
) -> None:
    """A missing keyring, a missing key or a wrong key raise EncryptionError naming it."""
    journal = EffectJournal(sealed_checkpoints)
    journal.record("t", "call-1", TOOL_RESULT)
    sealed_checkpoints.keyring = None
    with pytest.raises(EncryptionError, match=r"journal entry 'call-1'.*'k1'.*no keyring"):
        journal.get("t", "call-1")
    with pytest.raises(EncryptionError, match=r"'k1'.*no keyring"):
        journal.record("t", "call-1", {"other": 1})
    sealed_checkpoints.keyring = keyring("k2")
    with pytest.raises(EncryptionError, match="which this keyring lacks"):
        journal.list_entries("t")
    sealed_checkpoints.keyring = Keyring({"k1": K2})
    with pytest.raises(EncryptionError, match="does not decrypt"):
        journal.get("t", "call-1")


@pytest.mark.parametrize("use_async", [False, True])
async def test_journal_rotation_reencrypts_entries_in_place(
    sealed_checkpoints: BaseCheckpointStore, use_async: bool
) -> None:
    """rotate_key re-encrypts every journal's entries under the new key (plain ones too, and
    those of a thread without checkpoints, as tools journaled outside a graph leave), keeping
    their keys and times: the new key alone reads them."""
    store = sealed_checkpoints
    api = Api(store, use_async)  # type: ignore[arg-type]
    journal = Api(EffectJournal(store), use_async)  # type: ignore[arg-type]
    await put_run(api, "t", 1)
    await journal.record("t", "call-1", TOOL_RESULT, namespace="tools:1")
    await journal.record("tools-only", "call-1", TOOL_RESULT)
    store.keyring = None
    await journal.record("t", "call-2", "plain result")
    assert {effect_key_id(e.value) for e in stored_entries(store, "t")} == {"k1", None}
    store.keyring = keyring("k2", "k1")
    before = [await journal.list_entries(t) for t in ("t", "tools-only")]
    await api.rotate_key()
    for thread_id in ("t", "tools-only"):
        assert {effect_key_id(e.value) for e in stored_entries(store, thread_id)} == {"k2"}
    store.keyring = keyring("k2")
    after = [await journal.list_entries(t) for t in ("t", "tools-only")]
    assert after == before
    assert [e.result for e in after[0]] == [TOOL_RESULT, "plain result"]


async def test_plain_journal_entries_still_read_under_a_keyring(
    sealed_checkpoints: BaseCheckpointStore, tmp_path: Path
) -> None:
    """Entries recorded before the store had a keyring read as they are; new ones are sealed."""
    store = sealed_checkpoints
    journal = EffectJournal(store)
    store.keyring = None
    old = journal.record("t", "call-1", TOOL_RESULT)
    assert stored_entries(store, "t")[0].value.tag == "json"
    store.keyring = keyring("k1")
    assert journal.get("t", "call-1") == old
    assert journal.record("t", "call-1", {"other": 1}) == old
    journal.record("t", "call-2", "new")
    assert [effect_key_id(e.value) for e in stored_entries(store, "t")] == [None, "k1"]
    assert [e.result for e in journal.list_entries("t")] == [TOOL_RESULT, "new"]


async def test_journal_results_export_as_written_and_import_encrypted(
    sealed_checkpoints: BaseCheckpointStore, tmp_path: Path
) -> None:
    """An export holds the results as recorded (as it does checkpoint values); an import
    into a store with a keyring encrypts them under its own key."""
    source = make_checkpoint_store("memory", tmp_path)
    source.keyring = keyring("k2")
    source.put("t", "c1", Blob("json", b"{}"))
    entry = EffectJournal(source).record("t", "call-1", TOOL_RESULT)
    backup = io.StringIO()
    export_data(source, backup)
    [line] = [
        x for x in map(json.loads, backup.getvalue().splitlines()) if x.get("type") == "journal"
    ]
    assert line["value"] == {"tag": "json", "data": base64.b64encode(entry.value.data).decode()}
    backup.seek(0)
    import_data(sealed_checkpoints, backup)
    assert EffectJournal(sealed_checkpoints).get("t", "call-1") == entry
    assert [effect_key_id(e.value) for e in stored_entries(sealed_checkpoints, "t")] == ["k1"]


async def test_compaction_summaries_are_encrypted_and_rotated(api: Api, tmp_path: Path) -> None:
    """The running summary a Compactor keeps in thread metadata is derived from the messages,
    so it is encrypted like them: the compacted view reads back, raw storage holds none of it,
    other metadata stays readable, and rotation re-encrypts it."""
    from memfold.compaction import RECORD_KEY, ApproximateCounter, Compactor, RunningSummary

    store: BaseThreadStore = api.store
    store.keyring = keyring("k1")
    await api.set_thread_metadata("t", {"user_id": "ana"})
    words = "the vault code lives in the blue ledger on the third shelf"
    await api.append("t", [Message(role="user", content=f"{words} {i}") for i in range(40)])
    compactor = Compactor(store, RunningSummary(120, counter=ApproximateCounter()))
    view = compactor.view("t") if not api.use_async else await compactor.aview("t")
    summary = view[0].text
    assert "ledger" in summary
    info = await api.get_thread("t")
    assert info.metadata["user_id"] == "ana"
    assert RECORD_KEY in info.metadata
    raw_info = store.execute(thread_ops.GetThread("default", "t"))
    assert raw_info.metadata["user_id"] == "ana"
    assert "ledger" not in repr(raw_info.metadata)
    assert not holds(raw_storage(store, tmp_path), "blue ledger")
    store.keyring = keyring("k2", "k1")
    await api.rotate_key()
    store.keyring = keyring("k2")
    assert (await api.get_thread("t")).metadata == info.metadata
