"""Bad input gets a typed error and leaves stored data unchanged, on every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import memfold
from memfold import BackendUnavailable, InvalidInput, Message, UnsupportedOperation
from memfold.backends.sql import migrations
from memfold.stores import BaseThreadStore
from tests.support import Api, has

BAD_IDS: list[Any] = ["", "x" * 10_000_000, "a\x00b", "\ud800", 42, None, b"bytes"]


@pytest.fixture
async def seeded(api: Api) -> list[Message]:
    """A thread holding two messages, to check that failures leave it as it was."""
    stored: list[Message] = await api.append("t", [Message(role="user", content="keep me")])
    stored += await api.append("t", [Message(role="assistant", content="me too")])
    return stored


async def assert_unchanged(api: Api, seeded: list[Message]) -> None:
    assert await api.load("t") == seeded
    assert await api.count("t") == 2
    assert [t.thread_id for t in await api.list_threads()] == ["t"]


@pytest.mark.parametrize(
    "bad", BAD_IDS, ids=["empty", "10MB", "nul", "surrogate", "int", "none", "bytes"]
)
async def test_bad_thread_ids_are_refused(api: Api, seeded: list[Message], bad: Any) -> None:
    """Empty, huge, NUL-bearing, non-Unicode and non-str thread ids raise InvalidInput."""
    with pytest.raises(InvalidInput):
        await api.append(bad, [Message(role="user", content="x")])
    for call in (api.load, api.count, api.clear, api.delete_thread, api.get_thread):
        with pytest.raises(InvalidInput):
            await call(bad)
    if bad is not None:  # tenant=None names no tenant: the default one
        with pytest.raises(InvalidInput):
            await api.append("t", [Message(role="user", content="x")], tenant=bad)
    await assert_unchanged(api, seeded)


@pytest.mark.parametrize(
    "metadata",
    [{"when": object()}, {"n": float("nan")}, {"n": float("inf")}, {"s": {1, 2}}],
    ids=["object", "nan", "inf", "set"],
)
async def test_non_json_metadata_is_refused(
    api: Api, seeded: list[Message], metadata: dict[str, Any]
) -> None:
    """Metadata that JSON cannot hold exactly raises InvalidInput and stores nothing."""
    batch = [Message(role="user", content="ok"), Message(role="user", metadata=metadata)]
    with pytest.raises(InvalidInput):
        await api.append("t", batch)
    with pytest.raises(InvalidInput):
        await api.set_thread_metadata("t", metadata)
    await assert_unchanged(api, seeded)


async def test_deeply_nested_metadata_is_refused(api: Api, seeded: list[Message]) -> None:
    """Metadata nested too deeply to encode raises InvalidInput instead of crashing."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidInput):
        await api.append("t", [Message(role="user", metadata={"deep": deep})])
    await assert_unchanged(api, seeded)


async def test_lone_surrogates_in_content_are_refused(api: Api, seeded: list[Message]) -> None:
    """Text that is not valid Unicode raises InvalidInput and stores nothing."""
    with pytest.raises(InvalidInput):
        await api.append(
            "t", [Message(role="user", content="ok"), Message(role="user", content="\udc80")]
        )
    await assert_unchanged(api, seeded)


async def test_nul_bytes_in_content_are_stored_exactly(api: Api, seeded: list[Message]) -> None:
    """NUL characters in message text are kept and returned unchanged."""
    [stored] = await api.append("nul", [Message(role="user", content="a\x00b")])
    assert (await api.load("nul"))[0].content == "a\x00b" == stored.content


@pytest.mark.parametrize("role", ["robot", "", "USER", None])
def test_invalid_roles_are_refused(role: Any) -> None:
    """A message with an unknown role cannot be built."""
    with pytest.raises(InvalidInput, match="role"):
        Message(role=role, content="x")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": 5},
        {"content": [{"type": "text"}]},
        {"tool_calls": [{"id": "x"}]},
        {"metadata": []},
    ],
    ids=["int-content", "dict-parts", "dict-calls", "list-metadata"],
)
def test_malformed_messages_are_refused(kwargs: dict[str, Any]) -> None:
    """Content, tool calls and metadata of the wrong type raise InvalidInput."""
    with pytest.raises(InvalidInput):
        Message(role="user", **kwargs)


async def test_bad_paging_arguments_are_refused(api: Api, seeded: list[Message]) -> None:
    """Negative, non-int or huge page sizes raise InvalidInput."""
    for kwargs in ({"last": -1}, {"last": 1.5}, {"last": True}):
        with pytest.raises(InvalidInput):
            await api.load("t", **kwargs)
    for kwargs in ({"limit": 0}, {"limit": 10**9}, {"offset": -1}):
        with pytest.raises(InvalidInput):
            await api.list_threads(**kwargs)
    if await has(api, "full_text_search"):
        with pytest.raises(InvalidInput):
            await api.search("")
    await assert_unchanged(api, seeded)


async def test_appending_something_other_than_messages_is_refused(
    api: Api, seeded: list[Message]
) -> None:
    """Strings, dicts and other objects are not messages."""
    for bad in ("hello", {"role": "user"}, [Message(role="user"), "x"], 3):
        with pytest.raises(InvalidInput):
            await api.append("t", bad)
    await assert_unchanged(api, seeded)


def test_a_missing_capability_raises_unsupported_operation() -> None:
    """Asking for a capability the backend lacks raises UnsupportedOperation."""
    caps = memfold.Capabilities(full_text_search=False)
    with pytest.raises(UnsupportedOperation, match="full text search"):
        caps.require("full_text_search", "test")


def test_corrupted_sqlite_file_is_backend_unavailable(tmp_path: Path) -> None:
    """Opening a file that is not an SQLite database raises BackendUnavailable."""
    path = tmp_path / "corrupt.db"
    junk = b"this is not a database, just junk bytes" * 1000
    path.write_bytes(junk)
    with pytest.raises(BackendUnavailable, match="not a valid SQLite database"):
        memfold.open_store(f"sqlite:///{path}")
    assert path.read_bytes() == junk


def test_damaged_sqlite_file_is_backend_unavailable(tmp_path: Path) -> None:
    """A database whose pages were overwritten raises BackendUnavailable, not a crash."""
    path = tmp_path / "damaged.db"
    store = memfold.open_store(f"sqlite:///{path}")
    store.append("t", [Message(role="user", content="x" * 100) for _ in range(200)])
    store.close()
    data = bytearray(path.read_bytes())
    data[4096:12288] = b"\xff" * 8192
    path.write_bytes(bytes(data))

    def reopen_and_load() -> None:
        memfold.open_store(f"sqlite:///{path}").load("t")

    with pytest.raises(BackendUnavailable):
        reopen_and_load()


def test_a_store_without_setup_says_to_call_setup(tmp_path: Path) -> None:
    """Using an SQLite store before its schema exists says to call setup()."""
    store = memfold.open_store(f"sqlite:///{tmp_path / 'fresh.db'}", setup=False)
    with pytest.raises(BackendUnavailable, match=r"setup\(\)"):
        store.load("t")
    assert store.setup() == store.setup() == migrations.STEPS[-1].version
    assert store.load("t") == []


@pytest.mark.parametrize(
    "url", ["postgres-not-yet://x", "sqlite://", "sqlite:///:memory:", "memory://?max_threads=x", 5]
)
def test_bad_urls_are_refused(url: Any) -> None:
    """Unknown schemes, in-memory SQLite and malformed options raise InvalidInput."""
    with pytest.raises(InvalidInput):
        memfold.open_store(url)


def test_bad_memory_options_are_refused() -> None:
    """Non-positive bounds for the memory backend raise InvalidInput."""
    for kwargs in ({"max_threads": 0}, {"max_messages_per_thread": -1}, {"ttl_seconds": 0}):
        with pytest.raises(InvalidInput):
            memfold.open_store("memory://", **kwargs)


def test_bad_table_prefix_is_refused(tmp_path: Path) -> None:
    """A table prefix that is not a plain identifier raises InvalidInput."""
    with pytest.raises(InvalidInput):
        memfold.open_store(f"sqlite:///{tmp_path / 'x.db'}", table_prefix="x; DROP TABLE y")


def test_store_protocol_is_satisfied(store: BaseThreadStore) -> None:
    """Every backend satisfies the ThreadStore protocol."""
    assert isinstance(store, memfold.ThreadStore)
