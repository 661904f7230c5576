"""The thread-store behaviour every backend shares, through sync and async APIs."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from memfold import Conflict, InvalidInput, Message, NotFound, Part, ToolCall
from memfold.stores import new_id
from tests.support import Api, has, needs


def conversation(n: int, prefix: str = "message") -> list[Message]:
    return [
        Message(role="user" if i % 2 == 0 else "assistant", content=f"{prefix} {i}")
        for i in range(n)
    ]


async def test_append_then_load_returns_the_messages_in_order(api: Api) -> None:
    """Messages come back in the order they were appended, with ids and times assigned."""
    stored = await api.append("t", conversation(3))
    stored += await api.append("t", conversation(2, "later"))
    loaded = await api.load("t")
    assert [m.content for m in loaded] == [
        "message 0", "message 1", "message 2", "later 0", "later 1",
    ]  # fmt: skip
    assert loaded == stored
    assert all(m.id and m.created_at for m in loaded)


async def test_rich_messages_round_trip_exactly(api: Api) -> None:
    """Parts, tool calls, names, ids, times and metadata are stored without loss."""
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    message = Message(
        role="assistant",
        content=(Part(type="text", text="see"), Part(type="image", url="http://x/y.png")),
        name="bot",
        id="m-1",
        tool_calls=(ToolCall(id="c1", name="lookup", arguments={"q": "é", "n": [1, 2.5]}),),
        created_at=when,
        metadata={"usage": {"input_tokens": 3}, "nested": [None, True, "\x00"]},
    )
    tool = Message(role="tool", content="42", tool_call_id="c1", id="m-2", created_at=when)
    await api.append("t", [message, tool])
    assert await api.load("t") == [message, tool]


async def test_plain_text_with_nul_elsewhere_is_kept_and_searchable(api: Api) -> None:
    """A NUL in metadata or tool-call arguments is kept beside plain ASCII content, when the
    message is appended and when it is edited, and its words are still found (PostgreSQL
    refused it: its JSON cannot turn the escaped NUL into text; found by differential testing
    of the LangChain chat history)."""
    call = ToolCall(id="c1", name="grep", arguments={"sep": "\x00"})
    message = Message(role="assistant", content="calling grep", id="m-1", tool_calls=(call,))
    meta = Message(role="assistant", content="plain reply", id="m-2", metadata={"k": "a\x00b"})
    stored = [*await api.append("t", [message]), *await api.append("t", [meta])]
    assert [m.tool_calls for m in stored] == [(call,), ()]
    assert await api.load("t") == stored
    edited = replace(stored[1], content="edited reply", metadata={"k": "\x00"})
    await api.update_messages("t", [edited])
    assert await api.load("t") == [stored[0], edited]
    if await has(api, "full_text_search"):
        assert [h.message.id for h in await api.search("grep")] == ["m-1"]
        assert [h.message.id for h in await api.search("edited")] == ["m-2"]


async def test_last_n_returns_the_newest_messages(api: Api) -> None:
    """``last=n`` returns the newest n messages, oldest first."""
    await api.append("t", conversation(10))
    assert [m.content for m in await api.load("t", last=3)] == [
        "message 7", "message 8", "message 9",
    ]  # fmt: skip
    assert await api.load("t", last=0) == []
    assert len(await api.load("t", last=50)) == 10


async def test_before_pages_backwards_through_a_thread(api: Api) -> None:
    """``before=id`` with ``last=n`` returns the n messages preceding that message."""
    stored = await api.append("t", conversation(10))
    page = await api.load("t", before=stored[5].id, last=2)
    assert [m.content for m in page] == ["message 3", "message 4"]
    assert [m.content for m in await api.load("t", before=stored[2].id)] == [
        "message 0", "message 1",
    ]  # fmt: skip
    assert await api.load("t", before=stored[0].id) == []


async def test_before_an_unknown_message_is_not_found(api: Api) -> None:
    """Paging from a message id the thread does not hold raises NotFound."""
    await api.append("t", conversation(2))
    with pytest.raises(NotFound):
        await api.load("t", before="nope")


async def test_unknown_thread_is_empty(api: Api) -> None:
    """An unknown thread loads as empty and counts zero, but has no ThreadInfo."""
    assert await api.load("missing") == []
    assert await api.count("missing") == 0
    with pytest.raises(NotFound):
        await api.get_thread("missing")


async def test_count_and_thread_info_track_appends(api: Api) -> None:
    """The message count and update time follow each append."""
    await api.append("t", conversation(4))
    first = await api.get_thread("t")
    await api.append("t", conversation(3))
    info = await api.get_thread("t")
    assert await api.count("t") == 7
    assert info.message_count == 7
    assert info.created_at == first.created_at
    assert info.updated_at >= first.updated_at


async def test_threads_are_isolated_by_tenant(api: Api) -> None:
    """The same thread id under two tenants holds two separate conversations."""
    await api.append("t", conversation(2, "alice"), tenant="alice")
    await api.append("t", conversation(3, "bob"), tenant="bob")
    assert [m.content for m in await api.load("t", tenant="alice")] == ["alice 0", "alice 1"]
    assert await api.count("t", tenant="bob") == 3
    assert await api.load("t") == []
    assert [t.thread_id for t in await api.list_threads(tenant="alice")] == ["t"]
    if await has(api, "full_text_search"):
        assert await api.search("alice", tenant="bob") == []


async def test_list_threads_pages_newest_first(api: Api) -> None:
    """Threads are listed most recently updated first, in pages."""
    for name in ["a", "b", "c", "d"]:
        await api.append(name, conversation(1))
    await api.append("b", conversation(1))
    listed = [t.thread_id for t in await api.list_threads()]
    assert listed == ["b", "d", "c", "a"]
    assert [t.thread_id for t in await api.list_threads(limit=2, offset=1)] == ["d", "c"]


async def test_thread_metadata_is_replaced_and_kept(api: Api) -> None:
    """Thread metadata is stored, replaced on update and kept across appends."""
    await api.set_thread_metadata("t", {"title": "first"})
    await api.append("t", conversation(1))
    info = await api.set_thread_metadata("t", {"title": "second", "tags": ["x"]})
    assert info.metadata == {"title": "second", "tags": ["x"]}
    await api.append("t", conversation(1))
    assert (await api.get_thread("t")).metadata == {"title": "second", "tags": ["x"]}


async def test_clear_removes_messages_but_keeps_the_thread(api: Api) -> None:
    """Clearing a thread empties it and reports how many messages went."""
    await api.append("t", conversation(3))
    await api.append("other", conversation(2))
    assert await api.clear("t") == 3
    assert await api.load("t") == []
    assert (await api.get_thread("t")).message_count == 0
    assert await api.count("other") == 2
    assert await api.clear("missing") == 0


async def test_delete_thread_removes_it_entirely(api: Api) -> None:
    """A deleted thread is gone from listings and loads; deleting again reports False."""
    await api.append("t", conversation(3))
    await api.append("keep", conversation(1))
    assert await api.delete_thread("t") is True
    assert await api.delete_thread("t") is False
    assert await api.load("t") == []
    assert [t.thread_id for t in await api.list_threads()] == ["keep"]


async def test_clear_tenant_removes_only_that_tenant(api: Api) -> None:
    """Clearing a tenant removes all its threads and nothing of other tenants."""
    await api.append("a", conversation(1), tenant="gone")
    await api.append("b", conversation(1), tenant="gone")
    await api.append("a", conversation(1), tenant="kept")
    assert await api.clear_tenant("gone") == 2
    assert await api.list_threads(tenant="gone") == []
    assert await api.count("a", tenant="kept") == 1


async def test_search_finds_messages_by_their_words(api: Api) -> None:
    """Search matches every word of the query, in one thread or across the tenant."""
    await needs(api, "full_text_search")
    await api.append("food", [Message(role="user", content="I love Pizza with olives")])
    await api.append("food", [Message(role="assistant", content="Olives are salty")])
    await api.append("travel", [Message(role="user", content="pizza in Naples?")])
    hits = await api.search("pizza")
    assert sorted(h.thread_id for h in hits) == ["food", "travel"]
    in_thread = await api.search("olives", thread_id="food")
    assert {h.message.content for h in in_thread} == {
        "I love Pizza with olives", "Olives are salty",
    }  # fmt: skip
    assert [h.message.content for h in await api.search("pizza olives")] == [
        "I love Pizza with olives"
    ]
    assert await api.search("sushi") == []
    assert len(await api.search("olives", limit=1)) == 1


async def test_search_reads_text_parts(api: Api) -> None:
    """Search sees the text inside multi-part content."""
    await needs(api, "full_text_search")
    await api.append("t", [Message(role="user", content=(Part(type="text", text="red fox"),))])
    assert len(await api.search("fox")) == 1


async def test_search_query_syntax_is_not_interpreted(api: Api) -> None:
    """Quotes, operators and SQL in a query are matched as plain words, never executed."""
    await needs(api, "full_text_search")
    await api.append("t", [Message(role="user", content="drop table now OR never")])
    assert len(await api.search('"drop" OR table; DROP TABLE memfold_messages; --')) == 0
    assert len(await api.search("drop table*")) == 1
    assert await api.count("t") == 1


async def test_duplicate_message_id_is_a_conflict_and_stores_nothing(api: Api) -> None:
    """Re-appending a stored message id raises Conflict and leaves the thread unchanged."""
    stored = await api.append("t", conversation(2))
    with pytest.raises(Conflict):
        await api.append("t", [Message(role="user", content="new"), stored[0]])
    assert await api.load("t") == stored
    with pytest.raises(InvalidInput):
        await api.append("t", [Message(role="user", id="x"), Message(role="user", id="x")])
    assert await api.count("t") == 2


async def test_search_forgets_deleted_and_cleared_messages(api: Api) -> None:
    """Deleted, cleared and re-added messages are found exactly as they now stand."""
    await needs(api, "full_text_search")
    await api.append("a", [Message(role="user", content="alpha beta")])
    assert len(await api.search("alpha")) == 1
    await api.delete_thread("a")
    await api.append("a", [Message(role="user", content="gamma")])
    await api.append("b", [Message(role="user", content="alpha again")])
    assert [h.thread_id for h in await api.search("alpha")] == ["b"]
    assert [h.message.content for h in await api.search("gamma")] == ["gamma"]
    await api.clear("b")
    await api.clear_tenant("other")
    assert await api.search("alpha") == []
    assert len(await api.search("gamma")) == 1


def test_assigned_ids_sort_by_creation_time() -> None:
    """Ids memfold assigns are UUIDv7: unique, and later ids sort after earlier ones."""
    first = new_id()
    time.sleep(0.002)
    later = [new_id() for _ in range(1000)]
    assert all(first < x for x in later)
    assert len(set(later)) == 1000
    assert {uuid.UUID(x).version for x in [first, *later]} == {7}
    assert {uuid.UUID(x).variant for x in [first, *later]} == {uuid.RFC_4122}


def test_a_forked_child_assigns_ids_of_its_own() -> None:
    """A child process forked after its parent assigned ids never repeats the parent's next
    ones (the random part of an id: the time part alone could differ by chance)."""
    new_id()  # the parent now holds random bytes for its next ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32
    assert child[12:] != new_id()[12:]


async def test_replace_swaps_the_whole_thread(api: Api) -> None:
    """replace() leaves exactly the new messages, counted, searchable and in order."""
    await api.append("t", conversation(5, "old"))
    searchable = await has(api, "full_text_search")
    if searchable:
        await api.search("old")
    new = await api.replace("t", conversation(2, "new"))
    assert await api.load("t") == new
    assert await api.count("t") == 2
    if searchable:
        assert await api.search("old") == []
        assert len(await api.search("new")) == 2
    assert await api.replace("fresh", []) == []
    assert (await api.get_thread("fresh")).message_count == 0


async def test_replace_is_all_or_nothing(api: Api) -> None:
    """A replace that fails part-way (a repeated id) leaves the old thread intact."""
    old = await api.append("t", conversation(3))
    with pytest.raises(InvalidInput):
        await api.replace("t", [Message(role="user", id="x"), Message(role="user", id="x")])
    assert await api.load("t") == old


async def test_update_messages_rewrites_in_place(api: Api) -> None:
    """Messages rewritten by id keep their positions; search sees the new text."""
    stored = await api.append("t", conversation(3))
    searchable = await has(api, "full_text_search")
    if searchable:
        await api.search("message")
    edited = Message(role="user", content="edited words", id=stored[1].id, metadata={"x": 1})
    await api.update_messages("t", [edited])
    loaded = await api.load("t")
    assert [m.content for m in loaded] == ["message 0", "edited words", "message 2"]
    assert loaded[1].metadata == {"x": 1}
    if searchable:
        assert [h.message.id for h in await api.search("edited")] == [stored[1].id]
    assert await api.count("t") == 3


async def test_update_of_an_unknown_message_changes_nothing(api: Api) -> None:
    """Rewriting a message id the thread lacks raises NotFound and changes no message."""
    stored = await api.append("t", conversation(2))
    with pytest.raises(NotFound):
        await api.update_messages(
            "t", [Message(role="user", content="x", id=stored[0].id), Message(role="user", id="no")]
        )
    with pytest.raises(InvalidInput):
        await api.update_messages("t", [Message(role="user", content="no id")])
    assert await api.load("t") == stored


async def test_delete_messages_removes_only_those_ids(api: Api) -> None:
    """Deleting by id returns what was removed, oldest first, and keeps the rest in order."""
    stored = await api.append("t", conversation(5))
    removed = await api.delete_messages("t", [stored[3].id, "missing", stored[1].id])
    assert removed == [stored[1], stored[3]]
    assert await api.load("t") == [stored[0], stored[2], stored[4]]
    assert await api.count("t") == 3
    assert await api.load("t", before=stored[4].id, last=1) == [stored[2]]
    assert await api.delete_messages("t", []) == []
    assert await api.delete_messages("nothing", ["a"]) == []


async def test_search_finds_messages_appended_after_the_newest_was_deleted(api: Api) -> None:
    """Deleting the newest searched message, then appending, leaves every message findable
    (a store that reuses the freed position must still index the new message)."""
    await needs(api, "full_text_search")
    stored = await api.append("t", [Message(role="user", content=f"alpha {w}") for w in "ab"])
    assert len(await api.search("alpha")) == 2
    await api.delete_messages("t", [stored[1].id])
    await api.append("t", Message(role="user", content="alpha c"))
    await api.append("u", Message(role="user", content="alpha d"))
    found = sorted(h.message.content for h in await api.search("alpha"))
    assert found == ["alpha a", "alpha c", "alpha d"]


async def test_search_finds_messages_after_indexed_and_unindexed_ones_were_deleted(
    api: Api,
) -> None:
    """Deleting searched and not yet searched messages together, then appending, leaves the new
    messages findable and deletable (SQLite's index mark stayed above the reused positions:
    search missed them, and deleting one corrupted the index)."""
    await needs(api, "full_text_search")
    await api.append("t", Message(role="user", content="apple"))
    assert len(await api.search("apple")) == 1
    await api.append("t", Message(role="user", content="banana"))
    assert await api.delete_thread("t")
    await api.append("t", Message(role="user", content="cherry"))
    await api.append("u", Message(role="user", content="cherry pie"))
    assert sorted(h.thread_id for h in await api.search("cherry")) == ["t", "u"]
    assert await api.delete_thread("t")
    assert [h.thread_id for h in await api.search("cherry")] == ["u"]
    assert await api.search("apple") == await api.search("banana") == []


async def test_search_words_are_the_same_on_every_backend(api: Api) -> None:
    """Accents and underscores belong to words, as `memfold.fulltext.tokenize` says: ``naive``
    does not find ``naïve`` nor ``foo`` find ``foo_bar`` (SQLite's default tokenizer did)."""
    await needs(api, "full_text_search")
    await api.append("t", Message(role="user", content="naïve café foo_bar"))
    for query in ("naive", "cafe", "foo", "bar"):
        assert await api.search(query) == [], query
    for query in ("naïve", "CAFÉ", "foo_bar"):
        assert len(await api.search(query)) == 1, query


async def test_an_append_that_follows_a_message_lands_only_right_after_it(api: Api) -> None:
    """An append naming the message it must follow (a tiered store's hot writes) is refused
    with Conflict, changing nothing, unless the thread ends with that message ("": has none)."""
    store = api.store

    async def append(messages: list[Message], follows: str) -> list[str]:
        op = replace(store._append_op("t", messages, None)[0], follows=follows)
        await api.execute(op)
        return [str(m.id) for m in op.messages]

    with pytest.raises(Conflict, match="nothing was appended"):
        await append(conversation(1), "m-none")
    first = await append(conversation(1), "")
    with pytest.raises(Conflict, match="nothing was appended"):
        await append(conversation(1), "")
    second = await append(conversation(2, "later"), first[-1])
    for stale in ("", first[-1], second[0]):
        with pytest.raises(Conflict, match="nothing was appended"):
            await append(conversation(3, "stale"), stale)
    assert [m.id for m in await api.load("t")] == first + second
    assert await api.count("t") == 3
