"""Redaction on write, on every thread and memory backend, through the sync and async APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from memfold import Message, Part, ToolCall, open_store
from memfold.memories import BaseMemoryStore, open_memory_store
from memfold.memory_model import BYTES_KEY
from memfold.recall.embedders import HashingEmbedder, Kind
from memfold.redaction import REDACTED_KEY, Redactor
from tests.support import MEMORY_DIMS, Api, drop_checkpoint_store, make_memory_store

EVERY_MEMORY_BACKEND = ["memory", "sqlite", "postgresql", "chroma", "redis"]
SECRET = "reach bob@example.com or +1 415 555 0100, key sk-proj-abcdefghijklmnopqrstuv"


async def test_thread_messages_are_stored_redacted(api: Api) -> None:
    """Text, text parts, tool-call arguments and the metadata that holds content
    (`memfold.model.CONTENT_METADATA`) are redacted before they are stored, with the labels and
    counts in the message's metadata, and nothing else changes."""
    api.store.redactor = Redactor()
    messages = [
        Message(role="user", content=SECRET, metadata={"lang": "en"}),
        Message(
            role="assistant",
            content=(Part(type="text", text="mailing bob@example.com"),),
            tool_calls=(ToolCall("c1", "send_mail", {"to": "bob@example.com", "n": 1}),),
        ),
        Message(role="tool", content="sent", tool_call_id="c1"),
        Message(
            role="tool",
            content="sent",
            tool_call_id="c2",
            metadata={
                "langchain.artifact": {"to": ["ann@example.com"], "n": 2},
                "llama_index.raw_tool_kwargs": ['{"to": "ann@example.com"}'],
                "lang": "ann@example.com",
            },
        ),
    ]
    returned = await api.append("t", messages)
    loaded = await api.load("t")
    assert loaded == returned
    assert loaded[0].content == "reach [email] or [phone], key [api_key]"
    counts = {"api_key": 1, "email": 1, "phone": 1}
    assert loaded[0].metadata == {"lang": "en", REDACTED_KEY: counts}
    assert loaded[1].content == (Part(type="text", text="mailing [email]"),)
    assert loaded[1].tool_calls == (ToolCall("c1", "send_mail", {"to": "[email]", "n": 1}),)
    assert loaded[1].metadata == {REDACTED_KEY: {"email": 2}}
    assert loaded[2].content == "sent"
    assert loaded[2].metadata == {}
    # The metadata that holds content (what the adapters keep beside it) is redacted too; other
    # metadata is the app's own and stays as given.
    assert loaded[3].metadata == {
        "langchain.artifact": {"to": ["[email]"], "n": 2},
        "llama_index.raw_tool_kwargs": ['{"to": "[email]"}'],
        "lang": "ann@example.com",
        REDACTED_KEY: {"email": 2},
    }


async def test_replace_and_update_redact_too(api: Api) -> None:
    """Every write path (replace, update_messages) redacts, not only append."""
    api.store.redactor = Redactor(defaults=["email"])
    await api.replace("t", [Message(role="user", content="a@example.com", id="m1")])
    await api.update_messages("t", [Message(role="user", content="b@example.com c", id="m1")])
    [message] = await api.load("t")
    assert message.content == "[email] c"
    assert message.metadata == {REDACTED_KEY: {"email": 1}}


async def test_without_a_redactor_nothing_is_redacted(api: Api) -> None:
    """Redaction is opt-in: a store opened without one stores the text as written."""
    assert api.store.redactor is None
    await api.append("t", [Message(role="user", content=SECRET)])
    assert (await api.load("t"))[0].content == SECRET


def test_the_url_option_turns_redaction_on(tmp_path: Path) -> None:
    """``redact=default`` (or a list of labels) in the URL gives the store a redactor; the
    option does not reach the backend."""
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}?redact=email")
    assert store.redactor is not None
    assert store.redactor.labels == ("email",)
    store.append("t", Message(role="user", content="bob@example.com +1 415 555 0100"))
    assert store.load("t")[0].content == "[email] +1 415 555 0100"
    assert open_store("memory://?max_threads=3&redact=default").redactor is not None
    memories = open_memory_store("memory://?redact=phone")
    assert memories.redactor is not None
    assert memories.redactor.labels == ("phone",)


class RecordingEmbedder(HashingEmbedder):
    """A hashing embedder that remembers every text it was given."""

    def __init__(self) -> None:
        super().__init__(MEMORY_DIMS)
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        self.seen.extend(texts)
        return super().embed(texts, kind=kind)


@pytest.fixture(params=EVERY_MEMORY_BACKEND)
async def redacting(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[BaseMemoryStore, RecordingEmbedder]]:
    """A memory store of each backend with a default redactor and a recording embedder."""
    embedder = RecordingEmbedder()
    store = make_memory_store(str(request.param), tmp_path, embedder=embedder)
    store.redactor = Redactor()
    yield store, embedder
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops the test schema or keys


@pytest.mark.parametrize("use_async", [False, True])
async def test_memories_are_redacted_before_they_are_embedded_or_stored(
    redacting: tuple[BaseMemoryStore, RecordingEmbedder], use_async: bool
) -> None:
    """A memory's text and value strings are redacted before the embedder sees them and
    before they are stored; the counts go to the value."""
    store, embedder = redacting
    api = Api(store, use_async)  # type: ignore[arg-type]
    ns = ("acme", "u1")
    stored = await api.put(ns, SECRET, {"contact": "bob@example.com", "age": 41})
    expected_text = "reach [email] or [phone], key [api_key]"
    assert stored.text == expected_text
    assert stored.value == {
        "contact": "[email]",
        "age": 41,
        REDACTED_KEY: {"api_key": 1, "email": 2, "phone": 1},
    }
    assert embedder.seen == ([expected_text] if store.capabilities.vector_search else [])
    found = await api.get(ns, stored.id)
    assert (found.text, found.value) == (stored.text, stored.value)
    if store.capabilities.vector_search:
        [hit] = await api.search(ns, "reach email", k=1, text_weight=0.0, vector_weight=1.0)
        assert hit.record.text == expected_text
    assert all("bob@example.com" not in text for text in embedder.seen)


@pytest.mark.parametrize("use_async", [False, True])
async def test_key_value_bytes_are_not_redacted(
    redacting: tuple[BaseMemoryStore, RecordingEmbedder], use_async: bool
) -> None:
    """A key-value entry (no text, base64 bytes under BYTES_KEY alone) is stored as it is,
    though its base64 reads as an AWS key id: redacting it corrupted the bytes. A record with
    other keys beside it, or with text, is redacted as before."""
    store, _ = redacting
    api = Api(store, use_async)  # type: ignore[arg-type]
    ns = ("acme", "kv")
    looks_like_a_key = "AKIAABCDEFGHIJKLMNOP"  # the base64 of 15 bytes
    entry = await api.put(ns, "", {BYTES_KEY: looks_like_a_key}, id="k")
    assert entry.value == {BYTES_KEY: looks_like_a_key}
    assert (await api.get(ns, "k")).value == entry.value
    beside = await api.put(ns, "", {BYTES_KEY: looks_like_a_key, "note": "hi"})
    assert beside.value == {BYTES_KEY: "[aws_key]", "note": "hi", REDACTED_KEY: {"aws_key": 1}}
    texted = await api.put(ns, "a note", {BYTES_KEY: looks_like_a_key})
    assert texted.value[BYTES_KEY] == "[aws_key]"
