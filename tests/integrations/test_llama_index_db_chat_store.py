"""MemfoldDBChatStore: LlamaIndex's AsyncDBChatStore over memfold threads, behind Memory."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.base.llms.types import TextBlock
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import BaseMemoryBlock, Memory, StaticMemoryBlock
from llama_index.core.storage.chat_store.base_db import MessageStatus
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from pydantic import Field
from sqlalchemy.ext.asyncio import create_async_engine

from memfold import Message
from memfold.integrations.llama_index import MemfoldDBChatStore
from memfold.integrations.llama_index.db_chat_store import STATUS
from memfold.stores import BaseThreadStore

ACTIVE, ARCHIVED = MessageStatus.ACTIVE, MessageStatus.ARCHIVED


def turn(i: int) -> list[ChatMessage]:
    """User message i and the assistant's answer to it."""
    return [
        ChatMessage(role="user", content=f"question {i} " + "word " * 6),
        ChatMessage(role="assistant", content=f"answer {i} " + "word " * 6),
    ]


MESSAGES = [m for i in range(3) for m in turn(i)]


async def run_script(chat_store: Any) -> list[Any]:
    """Every AsyncDBChatStore operation except delete_message, and what each returned."""
    return [
        await chat_store.add_messages("k1", MESSAGES[:4]),
        await chat_store.add_message("k1", MESSAGES[4], status=ARCHIVED),
        await chat_store.add_message("k1", MESSAGES[5]),
        await chat_store.count_messages("k1"),
        await chat_store.count_messages("k1", ARCHIVED),
        await chat_store.count_messages("k1", None),
        await chat_store.archive_oldest_messages("k1", 2),
        await chat_store.get_messages("k1"),
        await chat_store.get_messages("k1", ARCHIVED),
        await chat_store.get_messages("k1", None, limit=3, offset=1),
        await chat_store.get_messages("k1", ACTIVE, limit=1),
        await chat_store.delete_oldest_messages("k1", 1),
        await chat_store.get_messages("k1", None),
        await chat_store.set_messages("k2", MESSAGES[:2], status=ARCHIVED),
        sorted(await chat_store.get_keys()),
        await chat_store.get_messages("k2"),
        await chat_store.count_messages("k2", ARCHIVED),
        await chat_store.delete_messages("k1", ARCHIVED),
        await chat_store.get_messages("k1", None),
        await chat_store.delete_messages("k1", ACTIVE),
        sorted(await chat_store.get_keys()),
        await chat_store.archive_oldest_messages("k2", 5),
        await chat_store.delete_oldest_messages("nope", 2),
        await chat_store.delete_messages("k2"),
        await chat_store.get_keys(),
    ]


async def test_behaves_like_sqlalchemy_chat_store(store: BaseThreadStore) -> None:
    """The same operations give the same results as LlamaIndex's own SQLAlchemyChatStore."""
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    reference = SQLAlchemyChatStore(table_name="reference", async_engine=engine)
    try:
        assert await run_script(MemfoldDBChatStore(store)) == await run_script(reference)
    finally:
        await engine.dispose()


async def test_status_is_kept_in_memfold_metadata(store: BaseThreadStore) -> None:
    """Archiving marks messages in place: the thread keeps every message, in order."""
    chat_store = MemfoldDBChatStore(store)
    await chat_store.add_messages("k1", MESSAGES[:4])
    assert await chat_store.archive_oldest_messages("k1", 3) == MESSAGES[:3]
    stored = store.load("k1")
    assert [m.text for m in stored] == [m.content for m in MESSAGES[:4]]
    assert [m.metadata.get(STATUS) for m in stored] == ["archived"] * 3 + [None]


async def test_delete_message_uses_positions_over_all_statuses(store: BaseThreadStore) -> None:
    """delete_message takes a position among all of a key's messages; out of range gives None."""
    chat_store = MemfoldDBChatStore(store)
    await chat_store.add_messages("k1", MESSAGES[:2], status=ARCHIVED)
    await chat_store.add_messages("k1", MESSAGES[2:4])
    assert await chat_store.delete_message("k1", 2) == MESSAGES[2]
    assert await chat_store.delete_message("k1", 3) is None
    assert await chat_store.get_messages("k1", None) == [*MESSAGES[:2], MESSAGES[3]]
    assert await chat_store.count_messages("k1", ARCHIVED) == 2


async def test_reads_return_fresh_objects(store: BaseThreadStore) -> None:
    """Mutating returned messages (as Memory.aget does) never changes what is stored."""
    chat_store = MemfoldDBChatStore(store)
    await chat_store.set_messages("k1", MESSAGES[:2])
    first = await chat_store.get_messages("k1")
    first[0].blocks.append(first[1].blocks[0])
    first[1].additional_kwargs["session_id"] = "x"
    assert await chat_store.get_messages("k1") == MESSAGES[:2]


async def test_methods_use_only_the_async_store_api(
    store: BaseThreadStore, forbid_sync_io: Callable[[BaseThreadStore], None]
) -> None:
    """Every method runs with the store's sync I/O disabled."""
    chat_store = MemfoldDBChatStore(store)
    forbid_sync_io(store)
    assert await run_script(chat_store)


class RecordingBlock(BaseMemoryBlock[str]):
    """A memory block that keeps the texts Memory flushes to it."""

    flushed: list[str] = Field(default_factory=list)

    async def _aget(self, messages: list[ChatMessage] | None = None, **kwargs: Any) -> str:
        return f"{len(self.flushed)} flushed"

    async def _aput(self, messages: list[ChatMessage]) -> None:
        self.flushed.extend(m.content or "" for m in messages)


async def test_memory_archives_and_flushes_to_blocks(store: BaseThreadStore) -> None:
    """Memory over the store archives old turns, hands them to blocks, and reads the rest."""
    block = RecordingBlock(name="recorder")
    memory = Memory.from_defaults(
        session_id="s1",
        chat_store=MemfoldDBChatStore(store),
        token_limit=60,
        chat_history_token_ratio=0.5,
        token_flush_size=10,
        memory_blocks=[block],
    )
    for i in range(4):
        await memory.aput_messages(turn(i))
    stored = store.load("s1")
    archived = [m.text for m in stored if m.metadata.get(STATUS) == "archived"]
    assert archived == [m.content for i in range(len(archived) // 2) for m in turn(i)]
    assert 0 < len(archived) < 8
    assert block.flushed == archived
    got = await memory.aget()
    assert [m.content for m in got[1:]] == [m.text for m in stored[len(archived) :]]
    assert "flushed" in (got[0].content or "")
    assert len(await memory.aget_all()) == 8


async def test_memory_aget_does_not_corrupt_stored_messages(store: BaseThreadStore) -> None:
    """Repeated Memory.aget calls with a static block leave the stored system message as it was."""
    memory = Memory.from_defaults(
        session_id="s1",
        chat_store=MemfoldDBChatStore(store),
        memory_blocks=[
            StaticMemoryBlock(name="profile", static_content=[TextBlock(text="Ann likes tea.")])
        ],
    )
    await memory.aput_messages([ChatMessage(role="system", content="Be brief."), *turn(0)])
    for _ in range(3):
        got = await memory.aget()
    assert "Ann likes tea." in (got[0].content or "")
    assert store.load("s1")[0].content == "Be brief."


def test_memory_sync_methods_work(store: BaseThreadStore) -> None:
    """Memory's sync put/get/reset run their coroutines against the store."""
    memory = Memory.from_defaults(session_id="s1", chat_store=MemfoldDBChatStore(store))
    memory.put_messages(turn(0))
    assert [m.content for m in memory.get()] == [m.content for m in turn(0)]
    memory.reset()
    assert store.load("s1") == []


async def test_memory_from_chat_history_writes_the_thread(store: BaseThreadStore) -> None:
    """Memory.from_defaults(chat_history=...) replaces the session's thread with that history."""
    chat_store = MemfoldDBChatStore(store)
    await chat_store.add_messages("s1", turn(5))
    memory = Memory.from_defaults(session_id="s1", chat_store=chat_store, chat_history=turn(0))
    assert [m.content for m in await memory.aget_all()] == [m.content for m in turn(0)]


async def test_memory_sync_methods_work_inside_a_running_loop(store: BaseThreadStore) -> None:
    """Memory's sync methods, called from async code, still reach the store (on their own loop)."""
    memory = Memory.from_defaults(session_id="s1", chat_store=MemfoldDBChatStore(store))
    memory.put_messages(turn(0))
    memory.put(turn(1)[0])
    assert [m.text for m in store.load("s1")] == [m.content for m in [*turn(0), turn(1)[0]]]
    assert len(memory.get_all()) == 3


def _loaded(store: BaseThreadStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many messages each ``aload`` of ``store`` returns, from now on."""
    sizes: list[int] = []
    aload = store.aload

    async def counting(*args: Any, **kwargs: Any) -> list[Message]:
        found = await aload(*args, **kwargs)
        sizes.append(len(found))
        return found

    monkeypatch.setattr(store, "aload", counting)
    return sizes


async def test_reads_cost_the_messages_they_return(
    store: BaseThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting a key, and reading its last page or its active messages, loads about as many
    messages as the answer holds, not the whole thread: before anything is archived, and after
    Memory-style archiving of the oldest messages."""
    chat_store = MemfoldDBChatStore(store)
    history = [m for i in range(150) for m in turn(i)]
    await chat_store.add_messages("k1", history)
    loaded = _loaded(store, monkeypatch)
    assert await chat_store.count_messages("k1") == 300
    assert await chat_store.get_messages("k1", limit=20, offset=280) == history[280:]
    assert await chat_store.get_messages("k1", None, limit=5, offset=290) == history[290:295]
    assert await chat_store.delete_message("k1", 299) == history[299]
    assert sum(loaded) <= 40, loaded

    assert await chat_store.archive_oldest_messages("k1", 280) == history[:280]
    loaded.clear()
    assert await chat_store.count_messages("k1") == 19
    assert await chat_store.get_messages("k1") == history[280:299]
    assert await chat_store.archive_oldest_messages("k1", 4) == history[280:284]
    assert await chat_store.get_messages("k1") == history[284:299]
    assert await chat_store.count_messages("k1", ARCHIVED) == 284
    assert sum(loaded) <= 5 * 50, loaded


@pytest.mark.parametrize("seed", range(3))
async def test_random_operations_match_sqlalchemy_chat_store(
    store: BaseThreadStore, seed: int
) -> None:
    """Any mix of adds (active or archived), archiving, deleting and paged reads answers as
    LlamaIndex's own SQLAlchemyChatStore does."""
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    reference = SQLAlchemyChatStore(table_name="reference", async_engine=engine)
    ours = MemfoldDBChatStore(store)
    rng = random.Random(seed)
    made = 0

    async def both(name: str, *args: Any) -> None:
        got = await getattr(ours, name)(*args)
        expected = await getattr(reference, name)(*args)
        assert got == expected, (name, args)

    try:
        for _ in range(40):
            status = rng.choice([ACTIVE, ACTIVE, ARCHIVED, None])
            action = rng.randrange(7)
            if action <= 1:
                count = rng.randint(1, 4)
                added = [m for i in range(made, made + count) for m in turn(i)][:count]
                made += count
                await both("add_messages", "k", added, status or ACTIVE)
            elif action == 2:
                await both("archive_oldest_messages", "k", rng.randint(0, 5))
            elif action == 3:
                await both("delete_oldest_messages", "k", rng.randint(0, 2))
            elif action == 4:
                total = await reference.count_messages("k", status)
                offset = rng.randint(0, total + 1)
                await both("get_messages", "k", status, rng.choice([None, 1, 3]), offset)
            elif action == 5 and rng.random() < 0.2:
                await both("delete_messages", "k", status)
            await both("count_messages", "k", status)
            await both("get_messages", "k", status)
    finally:
        await engine.dispose()
