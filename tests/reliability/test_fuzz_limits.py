"""Size limits on every backend: a 100 MB payload is refused within seconds with a
`LimitExceeded` naming its limit, a value exactly at a (lowered) limit is stored exactly, one
byte more is refused, and nothing else in the store changes."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import memfold
from memfold import InvalidInput, LimitExceeded, Limits, Message, Part, ToolCall
from memfold.checkpoints import BaseCheckpointStore, Blob, PendingWrite
from memfold.export import export_data
from memfold.importer import import_data
from memfold.limits import MAX_NAMESPACE_BYTES, MAX_SECONDS
from memfold.memories import BaseMemoryStore, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.stores import MAX_ID_LENGTH, BaseThreadStore
from tests.backends.test_checkpoints import make_checkpoint_store
from tests.reliability.fuzzing import nested
from tests.support import (
    MEMORY_DIMS,
    REDIS_URL,
    drop_checkpoint_store,
    drop_store,
    make_memory_store,
    make_store,
)

MB100 = 100_000_000
FAST = 10.0
"""Seconds within which a 100 MB payload must be refused (it takes milliseconds: the checks
count characters before encoding anything)."""

BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseThreadStore]:
    """A thread store of each backend holding a canary thread."""
    s = make_store(request.param, tmp_path)
    s.append("canary", [Message(role="user", content="keep me")])
    yield s
    drop_store(s)
    s.close()


@pytest.fixture(params=BACKENDS)
async def cstore(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseCheckpointStore]:
    """A checkpoint store of each backend."""
    s = make_checkpoint_store(request.param, tmp_path)
    yield s
    await s.aclose()
    drop_checkpoint_store(s)


@pytest.fixture(params=[*BACKENDS, "chroma"])
async def mstore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseMemoryStore]:
    """A memory store of each backend."""
    if request.param == "redis":
        s = open_memory_store(
            REDIS_URL,
            key_prefix=f"memfold-test:{uuid.uuid4().hex}:",
            embedder=HashingEmbedder(MEMORY_DIMS),
        )
    else:
        s = make_memory_store(request.param, tmp_path)
    yield s
    await s.aclose()
    drop_checkpoint_store(s)  # type: ignore[arg-type]  # drops the schema or the keys


def refused_fast(
    limit: str, call: Any, *args: Any, within: float = FAST, **kwargs: Any
) -> LimitExceeded:
    """Run the call, check it raised LimitExceeded naming ``limit`` within ``within`` seconds."""
    started = time.perf_counter()
    with pytest.raises(LimitExceeded, match=rf"\({limit}\).*limits=Limits\({limit}=") as info:
        call(*args, **kwargs)
    assert time.perf_counter() - started < within
    return info.value


@pytest.mark.parametrize(
    "message",
    [
        lambda: Message(role="user", content="x" * MB100),
        lambda: Message(role="user", content=(Part("image", data="A" * MB100),)),
        lambda: Message(role="user", metadata={"blob": "é" * (MB100 // 2)}),
        lambda: Message(role="assistant", tool_calls=(ToolCall("c", "f", {"a": "x" * MB100}),)),
    ],
    ids=["content", "part", "metadata", "tool-args"],
)
async def test_a_100mb_message_is_refused_in_seconds(store: BaseThreadStore, message: Any) -> None:
    """A 100 MB message, whichever field holds the bytes, is refused with LimitExceeded in
    seconds, sync and async, and the store keeps only what it had."""
    big = message()
    refused_fast("max_message_bytes", store.append, "t", [Message(role="user"), big])
    started = time.perf_counter()
    with pytest.raises(LimitExceeded):
        await store.aappend("t", big)
    assert time.perf_counter() - started < FAST
    assert store.count("t") == 0
    assert [m.content for m in store.load("canary")] == ["keep me"]


def test_message_and_metadata_limits_are_exact(store: BaseThreadStore) -> None:
    """A message or thread metadata exactly at a lowered limit is stored and read back exactly;
    one byte more (or a character of two bytes where the limit counts one) is refused and
    stores nothing."""
    store.limits = Limits(max_message_bytes=200, max_metadata_bytes=100)
    now = memfold.model.utcnow()
    empty = len(Message(role="user", id="m1", created_at=now).to_json().encode())
    fits = Message(role="user", content="x" * (200 - empty), id="m1", created_at=now)
    assert store.append("t", fits) == [fits] == store.load("t")
    for over in ("x" * (201 - empty), "é" + "x" * (199 - empty)):
        refused_fast("max_message_bytes", store.append, "t", Message(role="user", content=over))
    metadata = {"k": "v" * (100 - len('{"k":""}'))}
    assert store.set_thread_metadata("t", metadata).metadata == metadata
    refused_fast("max_metadata_bytes", store.set_thread_metadata, "t", {**metadata, "k2": ""})
    assert store.get_thread("t").metadata == metadata
    assert store.load("t") == [fits]


def test_nesting_is_limited_and_keys_must_be_str(store: BaseThreadStore) -> None:
    """Metadata and tool-call arguments nest up to max_json_depth; deeper is LimitExceeded, and
    a non-str key (which JSON would turn into a str, merging it with a real one) InvalidInput."""
    store.limits = Limits(max_json_depth=8)
    ok = Message(role="user", metadata={"deep": nested(7)})
    assert store.append("t", ok) == store.load("t")
    for deep in (
        Message(role="user", metadata={"deep": nested(8)}),
        Message(role="assistant", tool_calls=(ToolCall("c", "f", {"deep": nested(8)}),)),
        Message(role="user", content=(Part("text", "x", extra={"deep": nested(8)}),)),
    ):
        refused_fast("max_json_depth", store.append, "t", deep)
    refused_fast("max_json_depth", store.set_thread_metadata, "t", {"deep": nested(100_000)})
    with pytest.raises(InvalidInput, match="key 1, a int"):
        store.append("t", Message(role="user", metadata={"1": "a", 1: "b"}))  # type: ignore[dict-item]
    assert store.count("t") == 1


def test_ids_are_limited_in_bytes(store: BaseThreadStore) -> None:
    """Ids may be 512 UTF-8 bytes: CJK ids of 170 characters (510 bytes) as tenant, thread and
    message id together are stored on every backend, and one of 171 (513 bytes) is refused on
    every backend (PostgreSQL used to refuse 512-character ones as an unreachable server)."""
    cjk = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(171))
    tenant, thread, message_id = cjk[:170], cjk[1:], cjk[:170][::-1]
    assert len(tenant.encode()) == 510 <= MAX_ID_LENGTH
    stored = store.append(thread, Message(role="user", id=message_id), tenant=tenant)
    assert store.load(thread, tenant=tenant) == stored
    with pytest.raises(InvalidInput, match="513 bytes of UTF-8; the limit is 512"):
        store.append(cjk, Message(role="user"), tenant=tenant)
    assert store.count(cjk[:170], tenant=tenant) == 0


def test_checkpoint_blobs_and_metadata_are_limited(cstore: BaseCheckpointStore) -> None:
    """A 100 MB checkpoint body, channel value or pending write is refused in seconds; a blob
    exactly at a lowered max_blob_bytes is stored exactly, one byte more refused."""
    huge = Blob("bytes", b"\0" * MB100)
    refused_fast("max_blob_bytes", cstore.put, "t", "c1", huge)
    refused_fast(
        "max_blob_bytes", cstore.put, "t", "c1", Blob("json", b"{}"),
        versions={"v": 1}, values={"v": huge},
    )  # fmt: skip
    cstore.put("t", "c1", Blob("json", b"{}"))
    writes = [PendingWrite("task", 0, "v", huge)]
    refused_fast("max_blob_bytes", cstore.put_writes, "t", "c1", writes)
    cstore.limits = Limits(max_blob_bytes=1_000, max_metadata_bytes=50)
    exact = Blob("bytes", bytes(range(256)) * 3 + b"\xff" * 232)
    cstore.put("t", "c2", exact, metadata={"step": 1}, versions={"v": 1}, values={"v": exact})
    got = cstore.get("t", checkpoint_id="c2")
    assert got is not None
    assert got.body == exact
    assert got.values == {"v": exact}
    over = Blob("bytes", exact.data + b"!")
    refused_fast("max_blob_bytes", cstore.put, "t", "c3", over)
    refused_fast("max_metadata_bytes", cstore.put, "t", "c3", exact, metadata={"x": "y" * 50})
    assert [c.checkpoint_id for c in cstore.list_checkpoints("t")] == ["c2", "c1"]


def test_memory_text_value_and_vectors_are_limited(mstore: BaseMemoryStore) -> None:
    """A 100 MB memory text, value or query is refused in seconds; text, values and vectors at
    lowered limits are stored exactly and one more is refused; nothing else changes."""
    mstore.put(("acme", "u1"), "keep me", {"n": 1}, id="canary")
    refused_fast("max_memory_text_bytes", mstore.put, ("acme", "u2"), "x" * MB100)
    refused_fast("max_memory_value_bytes", mstore.put, ("acme", "u2"), "v", {"b": "x" * MB100})
    if mstore.capabilities.full_text_search:
        refused_fast("max_memory_text_bytes", mstore.search, ("acme",), "x" * MB100)
    mstore.limits = Limits(max_memory_text_bytes=100, max_memory_value_bytes=50, max_json_depth=4)
    text = "é" * 50
    value = {"k": "v" * (50 - len('{"k":""}'))}
    record = mstore.put(("acme", "u2"), text, value, id="r1")
    got = mstore.get(("acme", "u2"), "r1")
    assert got is not None
    assert (got.text, got.value) == (text, value) == (record.text, value)
    refused_fast("max_memory_text_bytes", mstore.put, ("acme", "u2"), text + "x", id="r2")
    refused_fast("max_memory_value_bytes", mstore.put, ("acme", "u2"), "v", {**value, "": 1})
    refused_fast("max_json_depth", mstore.put, ("acme", "u2"), "v", {"d": nested(4)})
    if mstore.capabilities.vector_search:
        mstore.limits = Limits(max_vector_dimensions=MEMORY_DIMS - 1)
        refused_fast("max_vector_dimensions", mstore.put, ("acme", "u2"), "v",
                     embedding=[1.0] * MEMORY_DIMS)  # fmt: skip
    assert mstore.count(("acme", "u2")) == 1
    kept = mstore.get(("acme", "u1"), "canary")
    assert kept is not None
    assert (kept.text, kept.value) == ("keep me", {"n": 1})


def test_memory_namespaces_ids_and_durations_have_fixed_limits(mstore: BaseMemoryStore) -> None:
    """A namespace over MAX_NAMESPACE_BYTES, a NUL in a value, and a TTL past MAX_SECONDS (which
    used to overflow the date type) are refused with InvalidInput."""
    labels = ("acme", *["\u4e2d" * 100] * 4)
    assert sum(len(label.encode()) + 1 for label in labels) > MAX_NAMESPACE_BYTES
    with pytest.raises(InvalidInput, match="MAX_NAMESPACE_BYTES"):
        mstore.put(labels, "x")
    assert mstore.put(labels[:4], "x").namespace == labels[:4]
    with pytest.raises(InvalidInput, match="NUL"):
        mstore.put(("acme",), "x", {"k": "a\x00b"})
    with pytest.raises(InvalidInput, match="MAX_SECONDS"):
        mstore.put(("acme",), "x", ttl_seconds=MAX_SECONDS * 2)
    assert mstore.count(("acme",)) == 1


def test_a_100mb_import_line_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    """An export whose one message line is 100 MB imports nothing and is refused in seconds;
    the target store's lowered limits apply to imports too, in the first pass, so a file
    with one oversized message imports nothing (it used to import the threads before it)."""
    source = memfold.open_store("memory://")
    source.append("small", Message(role="user", content="hi"))
    source.append("big", Message(role="user", content="x" * 1_000))
    buffer = io.StringIO()
    export_data(source, buffer)
    text = buffer.getvalue().replace("x" * 1_000, "x" * MB100)
    target = memfold.open_store(f"sqlite:///{tmp_path / 'target.db'}")
    # Parsing the 100 MB line takes most of it (about a second on an idle machine).
    refused_fast("max_message_bytes", import_data, target, io.StringIO(text), within=30)
    assert target.list_threads() == []
    target.limits = Limits(max_message_bytes=500)
    refused_fast("max_message_bytes", import_data, target, io.StringIO(buffer.getvalue()))
    assert target.list_threads() == []
    target.limits = Limits()
    assert import_data(target, io.StringIO(buffer.getvalue())).threads == 2


def test_limits_are_checked() -> None:
    """Limits must be positive ints under their ceilings, and stores take only a Limits."""
    for bad in ({"max_json_depth": 0}, {"max_json_depth": 501}, {"max_message_bytes": 1.5},
                {"max_vector_dimensions": 16_001}, {"max_blob_bytes": True}):  # fmt: skip
        with pytest.raises(InvalidInput, match=r"Limits\.max_"):
            Limits(**bad)
    with pytest.raises(InvalidInput, match="limits must be a memfold Limits"):
        memfold.open_store("memory://", limits={"max_message_bytes": 5})  # type: ignore[arg-type]
    assert memfold.open_store("memory://").limits == Limits()
