"""Export and import: the JSON-lines format, exact round trips of every store kind, filters,
and bad input (threads in memory stores here; other backends in tests/backends)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import memfold.importer as importer_module
from memfold import (
    Conflict,
    InvalidInput,
    Message,
    NotFound,
    Part,
    ThreadInfo,
    ToolCall,
    open_store,
)
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    Checkpoint,
    PendingWrite,
    SequenceBlob,
    open_checkpoint_store,
)
from memfold.export import aexport_data, export_data, iter_threads
from memfold.export_format import FORMAT_VERSION, Counts
from memfold.importer import aimport_data, import_data
from memfold.journal import EffectJournal, JournalEntry
from memfold.memories import BaseMemoryStore, MemoryRecord, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.stores import BaseThreadStore

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

Snapshot = list[tuple[ThreadInfo, list[dict[str, Any]]]]


def chat_messages() -> list[Message]:
    """Messages that use every field the model has."""
    return [
        Message(role="system", content="be brief", id="m-sys", created_at=T0),
        Message(
            role="user",
            content=(
                Part(type="text", text="what is in this picture?"),
                Part(type="image", url="https://example.com/cat.png", mime_type="image/png"),
                Part(type="custom_block", extra={"cache": {"ttl": 5}, "tags": ["a", 1]}),
            ),
            name="ana",
            id="m-user",
            created_at=T0 + timedelta(seconds=1),
            metadata={"lang": "en", "scores": [1.5, None, True]},
        ),
        Message(
            role="assistant",
            content="",
            id="m-call",
            tool_calls=(ToolCall(id="call-1", name="vision", arguments={"detail": "high"}),),
            created_at=datetime(2026, 1, 2, 3, 4, 7, tzinfo=timezone(timedelta(hours=-5))),
        ),
        Message(role="tool", content="a cat", tool_call_id="call-1", name="vision", id="m-tool"),
        Message(role="assistant", content='A cat. ünïcødé ✓ "quotes"\nnew line'),
    ]


@pytest.fixture
def source() -> Iterator[BaseThreadStore]:
    """A memory store with a rich thread, an empty thread with metadata, and another tenant."""
    store = open_store("memory://")
    store.append("chat", chat_messages())
    store.set_thread_metadata("chat", {"topic": "pets", "nested": {"k": [1, 2]}})
    store.set_thread_metadata("empty", {"pinned": True})
    store.append("chat", Message(role="user", content="other tenant", id="m-x"), tenant="acme")
    yield store
    store.close()


def exported(store: Any, **kwargs: Any) -> str:
    out = io.StringIO()
    export_data(store, out, **kwargs)
    return out.getvalue()


def imported(store: Any, text: str, **kwargs: Any) -> Counts:
    return import_data(store, io.StringIO(text), **kwargs)


def snapshot(store: BaseThreadStore, tenant: str = "default") -> Snapshot:
    """Everything a tenant holds, including thread times (so any write shows)."""
    return [
        (info, [m.to_dict() for m in store.load(info.thread_id, tenant=tenant)])
        for info in iter_threads(store, tenant=tenant)
    ]


def assert_same_threads(a: BaseThreadStore, b: BaseThreadStore, tenant: str = "default") -> None:
    """Both stores hold the same threads (times and metadata) and messages, field for field."""
    assert snapshot(b, tenant) == snapshot(a, tenant)


def test_export_writes_a_header_then_each_thread_followed_by_its_messages(
    source: BaseThreadStore,
) -> None:
    """The file is a header line, then per thread one thread line and its messages in order."""
    lines = [json.loads(line) for line in exported(source).splitlines()]
    header = lines[0]
    assert header["format"] == "memfold"
    assert header["version"] == FORMAT_VERSION == 5
    assert header["kinds"] == ["threads"]
    assert header["tenant"] == "default"
    counts = {"threads": 2, "messages": 5, "checkpoints": 0, "journal_entries": 0, "memories": 0}
    assert lines[-1] == {"type": "end", "counts": counts}
    blocks: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for line in lines[1:-1]:
        assert line["tenant"] == "default"
        if line["type"] == "thread":
            current = line["thread_id"]
            assert ThreadInfo.from_dict(line) == source.get_thread(current)
            blocks[current] = []
        else:
            assert line["type"] == "message"
            assert line["thread_id"] == current
            blocks[current].append(line["message"])
    assert blocks == {
        "chat": [m.to_dict() for m in source.load("chat")],
        "empty": [],
    }


@pytest.mark.parametrize("target_url", ["memory://", "sqlite"])
def test_round_trip_restores_every_thread_exactly(
    source: BaseThreadStore, target_url: str, tmp_path: Path
) -> None:
    """Importing an export gives the same ids, times, metadata, tool calls and parts."""
    url = f"sqlite:///{tmp_path / 'copy.db'}" if target_url == "sqlite" else target_url
    text = exported(source)
    with open_store(url) as target:
        assert imported(target, text) == Counts(threads=2, messages=5)
        assert_same_threads(source, target)
        assert target.list_threads(tenant="acme") == []


async def test_async_twins_round_trip_through_sqlite(
    source: BaseThreadStore, tmp_path: Path
) -> None:
    """aexport_data and aimport_data round-trip exactly, on the async engine."""
    out = io.StringIO()
    assert (await aexport_data(source, out, tenant="acme")).threads == 1
    assert out.getvalue().splitlines()[1:] == exported(source, tenant="acme").splitlines()[1:]
    out.seek(0)
    target = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        assert (await aimport_data(target, out)).threads == 1
        assert_same_threads(source, target, tenant="acme")
    finally:
        await target.aclose()
        target.close()


async def test_async_export_of_named_threads_matches_sync(source: BaseThreadStore) -> None:
    """aexport_data with thread_ids writes the same blocks as export_data."""
    out = io.StringIO()
    assert (await aexport_data(source, out, thread_ids=["empty"])).threads == 1
    assert (
        out.getvalue().splitlines()[1:] == exported(source, thread_ids=["empty"]).splitlines()[1:]
    )


def test_export_of_named_threads_writes_only_those(source: BaseThreadStore) -> None:
    """thread_ids limits the export to those threads, each once, in the order given."""
    text = exported(source, thread_ids=["empty", "chat", "empty"])
    lines = [json.loads(line) for line in text.splitlines()]
    threads = [line["thread_id"] for line in lines if line.get("type") == "thread"]
    assert threads == ["empty", "chat"]
    assert len(lines) == 1 + 2 + len(chat_messages()) + 1


def test_export_of_an_unknown_thread_raises_before_writing(source: BaseThreadStore) -> None:
    """A missing thread id raises NotFound and nothing is written."""
    out = io.StringIO()
    with pytest.raises(NotFound, match="nope"):
        export_data(source, out, thread_ids=["chat", "nope"])
    assert out.getvalue() == ""


def test_export_arguments_are_checked_before_writing(source: BaseThreadStore) -> None:
    """A bare str for thread_ids or an invalid tenant raises InvalidInput and writes nothing."""
    out = io.StringIO()
    with pytest.raises(InvalidInput, match="not one str"):
        export_data(source, out, thread_ids="chat")
    with pytest.raises(InvalidInput, match="tenant must not be empty"):
        export_data(source, out, tenant="")
    with pytest.raises(InvalidInput, match="kinds must name"):
        export_data(source, out, kinds="threads,notes")
    with pytest.raises(InvalidInput, match="no checkpoints store"):
        export_data(source, out, kinds=["checkpoints"])
    with pytest.raises(InvalidInput, match=r"since .* must be before until"):
        export_data(source, out, since=T0, until=T0)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        export_data(source, out, since=datetime(2026, 1, 1))
    assert out.getvalue() == ""


def test_iter_threads_pages_through_every_thread_once() -> None:
    """iter_threads lists every thread once, most recent first, across pages."""
    store = open_store("memory://")
    for i in range(7):
        store.append(f"t{i}", Message(role="user", content=str(i)))
    listed = [info.thread_id for info in iter_threads(store, page_size=3)]
    assert listed == [info.thread_id for info in store.list_threads(limit=100)]
    assert sorted(listed) == [f"t{i}" for i in range(7)]


def test_progress_is_advanced_once_per_exported_message(source: BaseThreadStore) -> None:
    """The export progress callback hears of every thread and message written."""
    calls: list[tuple[str, int]] = []
    export_data(source, io.StringIO(), progress=lambda *call: calls.append(call))
    assert sorted(calls) == [("messages", 1)] * len(chat_messages()) + [("threads", 1)] * 2


def test_import_appends_in_batches_and_reports_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long thread is appended BATCH_SIZE messages at a time, each batch reported."""
    monkeypatch.setattr(importer_module, "BATCH_SIZE", 2)
    store = open_store("memory://")
    store.append("long", [Message(role="user", content=str(i)) for i in range(5)])
    target = open_store("memory://")
    calls: list[tuple[str, int]] = []
    imported(target, exported(store), progress=lambda *call: calls.append(call))
    assert calls == [("messages", 2), ("messages", 2), ("messages", 1), ("threads", 1)]
    assert_same_threads(store, target)


def test_import_into_another_tenant(source: BaseThreadStore) -> None:
    """tenant= puts every imported thread under that tenant."""
    target = open_store("memory://")
    imported(target, exported(source), tenant="copy")
    assert target.list_threads() == []
    assert {info.thread_id for info in target.list_threads(tenant="copy")} == {"chat", "empty"}
    assert target.load("chat", tenant="copy") == source.load("chat")


def test_import_into_an_existing_thread_adds_messages_and_replaces_metadata(
    source: BaseThreadStore,
) -> None:
    """Messages with new ids are appended after the stored ones; metadata comes from the file."""
    target = open_store("memory://")
    earlier = target.append("chat", Message(role="user", content="already here"))
    target.set_thread_metadata("chat", {"old": 1})
    imported(target, exported(source))
    assert target.load("chat") == earlier + source.load("chat")
    assert target.get_thread("chat").metadata == {"topic": "pets", "nested": {"k": [1, 2]}}


def test_import_of_a_stored_message_id_conflicts_and_imports_nothing(
    source: BaseThreadStore,
) -> None:
    """A message id already in its thread raises Conflict naming the line; nothing is written."""
    target = open_store("memory://")
    target.append("chat", Message(role="user", content="clash", id="m-tool"))
    before = snapshot(target)
    text = exported(source)
    thread_line = next(
        n
        for n, line in enumerate(text.splitlines(), 1)
        if '"type":"thread","thread_id":"chat"' in line
    )
    with pytest.raises(Conflict, match=f"line {thread_line}: .*'chat'.*m-tool"):
        imported(target, text)
    assert snapshot(target) == before
    with pytest.raises(NotFound):
        target.get_thread("empty")


class Unseekable(io.StringIO):
    """A text stream that cannot seek, like stdin or a pipe."""

    def seekable(self) -> bool:
        return False

    def seek(self, *args: Any) -> int:
        raise io.UnsupportedOperation("not seekable")

    def tell(self) -> int:
        raise io.UnsupportedOperation("not seekable")


def test_import_reads_a_source_that_cannot_seek(source: BaseThreadStore) -> None:
    """A pipe-like source is spooled, so the two passes still work."""
    target = open_store("memory://")
    assert import_data(target, Unseekable(exported(source))).threads == 2
    assert_same_threads(source, target)


def test_import_ignores_blank_lines(source: BaseThreadStore) -> None:
    """Blank lines between records are skipped."""
    text = "\n\n".join(exported(source).splitlines()) + "\n\n  \n"
    target = open_store("memory://")
    assert imported(target, text).threads == 2
    assert_same_threads(source, target)


def test_an_export_with_no_threads_imports_nothing() -> None:
    """A header and an end line are a valid, empty export."""
    text = exported(open_store("memory://"))
    assert len(text.splitlines()) == 2
    target = open_store("memory://")
    assert imported(target, text) == Counts()
    assert target.list_threads() == []


# Malformed input. The base file has a valid thread "a" before the bad line, so each case also
# shows that nothing from earlier lines is imported.

HEADER = {"format": "memfold", "version": 1, "kind": "threads", "tenant": "default"}


def _thread(thread_id: str, count: int, **extra: Any) -> dict[str, Any]:
    times = {"created_at": T0.isoformat(), "updated_at": T0.isoformat()}
    return {"type": "thread", "thread_id": thread_id, "tenant": "default", **times,
            "message_count": count, "metadata": {}, **extra}  # fmt: skip


def _message(thread_id: str, message_id: str, **fields: Any) -> dict[str, Any]:
    body = {"role": "user", "content": "hi", "id": message_id, "created_at": T0.isoformat()}
    return {"type": "message", "thread_id": thread_id, "tenant": "default",
            "message": {**body, **fields}}  # fmt: skip


def base_lines() -> list[str]:
    """Lines 1-6: header, thread a (1 message), thread b (2 messages)."""
    records = [
        HEADER,
        _thread("a", 1),
        _message("a", "a1"),
        _thread("b", 2),
        _message("b", "b1"),
        _message("b", "b2"),
    ]
    return [json.dumps(r) for r in records]


def _set(number: int, record: dict[str, Any] | str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        lines[number - 1] = record if isinstance(record, str) else json.dumps(record)
        return lines

    return edit


BAD_INPUTS: list[tuple[str, Callable[[list[str]], list[str]], str]] = [
    ("empty input", lambda lines: [], "line 1: the input is empty"),
    ("no header", lambda lines: lines[1:], "line 1: .*not a memfold export"),
    ("newer version", _set(1, {**HEADER, "version": 6}), "line 1: .*version 6.*upgrade memfold"),
    ("version not int", _set(1, {**HEADER, "version": "1"}), "line 1: .*must be an int"),
    ("wrong kind", _set(1, {**HEADER, "kind": "memories"}), "line 1: .*'memories'"),
    ("not JSON", _set(5, '{"type": "message", oops'), "line 5: not valid JSON"),
    ("not an object", _set(5, "[1, 2]"), "line 5: expected a JSON object, got list"),
    ("NaN", _set(5, json.dumps(_message("b", "b1")).replace('"hi"', "NaN")), "line 5: .*NaN"),
    ("unknown type", _set(5, {"type": "memo"}), "line 5: unknown line type 'memo'"),
    ("bad role", _set(5, _message("b", "b1", role="robot")), "line 5: .*invalid message role"),
    ("no id", _set(5, _message("b", "b1", id=None)), "line 5: .*needs 'id'"),
    ("no time", _set(5, _message("b", "b1", created_at=None)), "line 5: .*'created_at'"),
    ("naive time", _set(5, _message("b", "b1", created_at="2026-01-01T00:00")), "line 5: .*aware"),
    ("bad time", _set(5, _message("b", "b1", created_at="noon")), "line 5: .*isoformat"),
    ("other thread", _set(5, _message("a", "b1")), "line 5: message of thread 'a'"),
    ("duplicate id", _set(6, _message("b", "b1")), "line 6: message id 'b1' appears twice"),
    (
        "truncated",
        lambda lines: lines[:-1],
        "line 4: thread 'b' declares 2 messages but 1 follow \\(is the file truncated",
    ),
    (
        "extra message",
        lambda lines: [*lines, json.dumps(_message("b", "b3"))],
        "line 4: .* but 3 follow$",
    ),
    ("bad count", _set(4, _thread("b", -1)), "line 4: message_count must be an int >= 0"),
    (
        "time before 1970",
        _set(4, _thread("b", 2, updated_at="1969-12-31T23:59:59+00:00")),
        "line 4: updated_at must be from 1970-01-01 to before 2200-01-01",
    ),
    (
        "time from 2200",
        _set(2, _thread("a", 1, created_at="2200-01-01T00:00:00+00:00")),
        "line 2: created_at must be from 1970-01-01 to before 2200-01-01",
    ),
    ("no thread id", _set(4, {**_thread("b", 2), "thread_id": ""}), "line 4: thread id"),
    ("metadata list", _set(4, _thread("b", 2, metadata=[1])), "line 4: thread metadata"),
    ("twice", _set(4, _thread("a", 2)), "line 4: thread 'a' of tenant 'default' appears twice"),
    ("orphan", lambda lines: [lines[0], lines[2]], "line 2: a message line before any thread"),
    ("surrogate", _set(5, json.dumps(_message("b", "b1", content="\ud800"))), "line 5: .*Unicode"),
    (
        "arguments list",
        _set(5, _message("b", "b1", tool_calls=[{"id": "c", "name": "f", "arguments": [1]}])),
        "line 5: not a valid message: a ToolCall's arguments must be a mapping",
    ),
    (
        "part text not str",
        _set(5, _message("b", "b1", content=[{"type": "text", "text": 5}])),
        "line 5: not a valid message: a Part's type must be a str, and its text",
    ),
]


@pytest.mark.parametrize(
    ("edit", "error"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_malformed_input_raises_naming_the_line_and_imports_nothing(
    edit: Callable[[list[str]], list[str]], error: str
) -> None:
    """A bad line raises InvalidInput naming its line number, and the store is left unchanged."""
    target = open_store("memory://")
    target.append("keep", Message(role="user", content="untouched"))
    before = snapshot(target)
    with pytest.raises(InvalidInput, match=error):
        imported(target, "\n".join(edit(base_lines())) + "\n")
    assert snapshot(target) == before


def test_the_base_file_of_the_malformed_cases_is_valid() -> None:
    """Unedited, the version-1 file the malformed cases start from imports both threads, with
    the times it gives them."""
    target = open_store("memory://")
    assert imported(target, "\n".join(base_lines())) == Counts(threads=2, messages=3)
    assert [m.id for m in target.load("b")] == ["b1", "b2"]
    assert target.get_thread("b") == ThreadInfo("b", "default", T0, T0, 2, {})


def test_text_that_is_not_utf8_is_invalid_input() -> None:
    """Bytes that do not decode as UTF-8 raise InvalidInput, from a file or from a pipe."""
    raw = ("\n".join(base_lines()[:3]) + "\n").encode() + b'{"type": "\xff"}\n'
    target = open_store("memory://")
    seekable = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    with pytest.raises(InvalidInput, match="UTF-8"):
        import_data(target, seekable)

    class Pipe(io.TextIOWrapper):
        def seekable(self) -> bool:
            return False

    with pytest.raises(InvalidInput, match="UTF-8"):
        import_data(target, Pipe(io.BytesIO(raw), encoding="utf-8"))
    assert target.list_threads() == []


# Every store kind. `Stores` holds one store of each kind; `fill` writes two users' records
# with times spread over three days (T0, T0 + 1 day, T0 + 2 days).


DAY = timedelta(days=1)
T_ACME = "acme"
Stores = tuple[BaseThreadStore, BaseCheckpointStore, BaseMemoryStore]


def graph_run(thread_id: str, user: str, start: datetime) -> list[Checkpoint]:
    """Three checkpoints a day apart: a growing list, a plain value, forks and writes."""
    meta = {"user_id": user, "source": "loop"}
    items = (b"\x91\xa1a", b"\x91\xa1b", b"\x91\xa1c")
    return [
        Checkpoint(
            thread_id,
            "",
            "c1",
            None,
            start,
            {**meta, "step": 0},
            Blob("msgpack", b"\x01"),
            {"messages": 1, "mode": "x"},
            {"messages": SequenceBlob("msgpack", items[:1]), "mode": Blob("json", b"1")},
        ),
        Checkpoint(
            thread_id,
            "",
            "c2",
            "c1",
            start + DAY,
            {**meta, "step": 1},
            Blob("msgpack", b"\x02"),
            {"messages": 2, "mode": "x"},
            {"messages": SequenceBlob("msgpack", items[:2]), "mode": Blob("json", b"1")},
            (PendingWrite("task", 0, "messages", Blob("msgpack", b"\xc0"), "~p"),),
        ),
        Checkpoint(
            thread_id,
            "sub",
            "c3",
            None,
            start + 2 * DAY,
            {**meta, "step": 2},
            Blob("msgpack", b"\x03"),
            {"messages": 3.5},
            {"messages": SequenceBlob("msgpack", items)},
            (PendingWrite("t2", -1, "__error__", Blob("json", b'"boom"')),),
        ),
    ]


def memories_of(user: str, start: datetime) -> list[MemoryRecord]:
    """A kept fact with a vector, a key-value entry without text, and a deeper namespace."""
    embedder = HashingEmbedder(16)
    vector = tuple(embedder.embed([f"{user} likes tea"])[0])
    return [
        MemoryRecord(
            (T_ACME, user),
            "fact",
            f"{user} likes tea",
            {"kind": "pref"},
            vector,
            embedder.model,
            0.75,
            None,
            start,
            start,
            start + DAY,
            None,
        ),
        MemoryRecord(
            (T_ACME, user),
            "kv:theme",
            "",
            {"theme": "dark"},
            None,
            None,
            0.5,
            86400.0 * 3650,
            start,
            start + DAY,
            start + DAY,
            start + DAY * 3651,
        ),
        MemoryRecord(
            (T_ACME, user, "notes"),
            "n1",
            "a deeper note",
            {},
            None,
            None,
            0.1,
            None,
            start + 2 * DAY,
            start + 2 * DAY,
            start + 2 * DAY,
            None,
        ),
    ]


def fill(stores: Stores) -> None:
    """Users ann and bob, in tenant acme, in every store kind; a record of another tenant."""
    threads, checkpoints, memories = stores
    for offset, user in enumerate(("ann", "bob")):
        start = T0 + offset * DAY
        thread_id = f"chat-{user}"
        threads.append(
            thread_id,
            [
                Message(role="user", content=f"hi from {user}", id=f"{user}-1", created_at=start),
                Message(role="assistant", content="hello", id=f"{user}-2", created_at=start + DAY),
            ],
            tenant=T_ACME,
        )
        threads.restore_thread(
            ThreadInfo(thread_id, T_ACME, start, start + DAY, 0, {"user_id": user})
        )
        for c in graph_run(f"graph-{user}", user, start):
            checkpoints.restore(c, tenant=T_ACME)
        entry = JournalEntry(
            f"graph-{user}", "", "call-1", Blob("json", b'{"refund":42}'), start + DAY, "c1"
        )
        EffectJournal(checkpoints).restore(entry, tenant=T_ACME)
        memories.restore_many(memories_of(user, start))
    threads.append("elsewhere", Message(role="user", content="other tenant"), tenant="beta")
    memories.put(("beta", "ann"), "other tenant")


def memory_stores() -> Stores:
    return (
        open_store("memory://"),
        open_checkpoint_store("memory://"),
        open_memory_store("memory://", embedder=HashingEmbedder(16)),
    )


@pytest.fixture
def full() -> Stores:
    stores = memory_stores()
    fill(stores)
    return stores


def everything(stores: Stores, tenant: str = T_ACME) -> dict[str, Any]:
    """Everything a tenant holds in each kind, times included, in a comparable form."""
    threads, checkpoints, memories = stores
    graph_threads = sorted({c.thread_id for c in checkpoints.list_checkpoints(tenant=tenant)})
    journal = EffectJournal(checkpoints)
    return {
        "threads": snapshot(threads, tenant),
        "checkpoints": checkpoints.list_checkpoints(tenant=tenant),
        "journal": [journal.list_entries(t, tenant=tenant) for t in graph_threads],
        "memories": memories.list_records((tenant,), limit=1000, include_embedding=True),
    }


def ttl_threads(store: BaseThreadStore) -> None:
    """Thread 'gone' past its own TTL (last written at T0), 'kept' within it, 'plain' with none."""
    for thread_id in ("gone", "kept", "plain"):
        store.append(thread_id, Message(role="user", content=thread_id, id=f"{thread_id}-1"))
    store.restore_thread(replace(store.get_thread("gone"), created_at=T0, updated_at=T0))
    assert store.set_thread_ttl("gone", 3600)
    assert store.set_thread_ttl("kept", 1e6)


def test_a_threads_own_ttl_is_exported_and_imported_with_its_clock() -> None:
    """Each thread line carries the thread's own TTL (null: none); the import sets it, and it
    still counts from the thread's last write, so the target's sweep removes what the
    source's would."""
    source, target = open_store("memory://"), open_store("memory://")
    ttl_threads(source)
    text = exported(source)
    ttls = {
        line["thread_id"]: line["ttl_seconds"]
        for line in map(json.loads, text.splitlines())
        if line.get("type") == "thread"
    }
    assert ttls == {"gone": 3600.0, "kept": 1e6, "plain": None}
    assert imported(target, text).threads == 3
    for thread_id, ttl in ttls.items():
        assert target.get_thread_ttl(thread_id) == ttl
    assert_same_threads(source, target)
    assert target.sweep(dry_run=True) == source.sweep(dry_run=True)
    assert target.sweep().threads == 1
    assert sorted(i.thread_id for i in target.list_threads()) == ["kept", "plain"]


async def test_async_export_and_import_carry_a_threads_own_ttl() -> None:
    """aexport_data writes the TTLs export_data does, and aimport_data sets them."""
    source, target = open_store("memory://"), open_store("memory://")
    ttl_threads(source)
    out = io.StringIO()
    await aexport_data(source, out)
    assert out.getvalue().splitlines()[1:] == exported(source).splitlines()[1:]
    out.seek(0)
    await aimport_data(target, out)
    assert [target.get_thread_ttl(t) for t in ("gone", "kept", "plain")] == [3600.0, 1e6, None]


def test_an_existing_thread_takes_the_files_ttl_but_not_from_a_version_2_file() -> None:
    """An import into a thread that exists sets its TTL to the file's (none clears it); a
    version-2 file, which records no TTLs, leaves it and imports its threads without one."""
    source = open_store("memory://")
    source.append("kept", Message(role="user", content="x", id="k1", created_at=T0))
    text = exported(source)
    target = open_store("memory://")
    target.append("kept", Message(role="user", content="y", id="k0", created_at=T0))
    assert target.set_thread_ttl("kept", 60)
    imported(target, text.replace('"version":5', '"version":2').replace(',"ttl_seconds":null', ""))
    assert target.get_thread_ttl("kept") == 60.0
    assert target.count("kept") == 2
    source.append("kept", Message(role="user", content="z", id="k2", created_at=T0))
    imported(target, exported(source, since=T0 + timedelta(microseconds=1)))  # metadata only
    assert target.get_thread_ttl("kept") is None
    assert source.set_thread_ttl("kept", 120)
    fresh = open_store("memory://")
    imported(fresh, exported(source).replace('"version":5', '"version":2'))
    assert fresh.get_thread_ttl("kept") is None  # a version-2 file holds no TTLs


def checkpoint(thread_id: str, checkpoint_id: str, when: datetime) -> Checkpoint:
    """A plain checkpoint of ``thread_id`` stamped ``when``."""
    return Checkpoint(thread_id, "", checkpoint_id, None, when, {}, Blob("json", b"1"), {}, {})


def ttl_checkpoint_threads(store: BaseCheckpointStore) -> None:
    """Checkpoint thread 'gone' past its own TTL (last written at T0), 'kept' (two checkpoints)
    within it, 'plain' with none, and 'tools', which holds only a journal entry."""
    store.restore(checkpoint("gone", "c1", T0))
    now = datetime.now(UTC)
    store.restore(checkpoint("kept", "c1", now - timedelta(seconds=1)))
    store.restore(checkpoint("kept", "c2", now))
    store.restore(checkpoint("plain", "c1", now))
    EffectJournal(store).record("tools", "call-1", {"paid": 1})
    assert store.set_thread_ttl("gone", 3600)
    assert store.set_thread_ttl("kept", 1e6)


CHECKPOINT_TTLS = {"gone": 3600.0, "kept": 1e6, "plain": None, "tools": None}


def first_lines(text: str) -> dict[str, dict[str, Any]]:
    """Each checkpoint thread's first line (checkpoint or journal) of an export."""
    found: dict[str, dict[str, Any]] = {}
    for line in map(json.loads, text.splitlines()):
        if line.get("type") in ("checkpoint", "journal"):
            found.setdefault(line["thread_id"], line)
    return found


def test_a_checkpoint_threads_own_ttl_is_exported_and_imported_with_its_clock() -> None:
    """Each checkpoint thread's first line carries the thread's own TTL (null: none) and no
    other line does; the import sets it after the thread's checkpoints, and it still counts
    from their times, so the target's sweep removes what the source's would."""
    source, target = open_checkpoint_store("memory://"), open_checkpoint_store("memory://")
    ttl_checkpoint_threads(source)
    text = exported(source)
    firsts = first_lines(text)
    assert {t: line["thread_ttl_seconds"] for t, line in firsts.items()} == CHECKPOINT_TTLS
    carrying = [line for line in text.splitlines() if "thread_ttl_seconds" in line]
    assert carrying == [json.dumps(line, separators=(",", ":")) for line in firsts.values()]
    assert imported(target, text) == Counts(checkpoints=4, journal_entries=1)
    assert {t: target.get_thread_ttl(t) for t in CHECKPOINT_TTLS} == CHECKPOINT_TTLS
    assert target.sweep(dry_run=True) == source.sweep(dry_run=True)
    assert target.sweep().threads == 1
    assert {c.thread_id for c in target.list_checkpoints()} == {"kept", "plain"}


async def test_async_export_and_import_carry_a_checkpoint_threads_own_ttl() -> None:
    """aexport_data writes the checkpoint TTLs export_data does, and aimport_data sets them."""
    source, target = open_checkpoint_store("memory://"), open_checkpoint_store("memory://")
    ttl_checkpoint_threads(source)
    out = io.StringIO()
    await aexport_data(source, out)
    assert out.getvalue().splitlines()[1:] == exported(source).splitlines()[1:]
    out.seek(0)
    await aimport_data(target, out)
    assert {t: await target.aget_thread_ttl(t) for t in CHECKPOINT_TTLS} == CHECKPOINT_TTLS


def test_an_existing_checkpoint_thread_takes_the_files_ttl_but_not_from_a_version_3_file() -> None:
    """An import into a checkpoint thread that exists sets its TTL to the file's (none clears
    it), also when the file holds only its journal entries (whose first line then carries the
    TTL), unless the import selects none of the thread's lines; a version-3 file, which
    records no checkpoint TTLs, leaves it and imports its checkpoint threads without one."""
    source, target = open_checkpoint_store("memory://"), open_checkpoint_store("memory://")
    source.restore(checkpoint("kept", "c1", T0))
    target.restore(checkpoint("kept", "c0", T0))
    assert target.set_thread_ttl("kept", 60)
    assert source.set_thread_ttl("kept", 120)
    assert imported(target, exported(source), until=T0) == Counts()
    assert target.get_thread_ttl("kept") == 60.0
    old = exported(source).replace('"version":5', '"version":3')
    imported(target, old.replace(',"thread_ttl_seconds":120.0', ""))
    assert target.get_thread_ttl("kept") == 60.0
    assert len(target.list_checkpoints("kept")) == 2
    fresh = open_checkpoint_store("memory://")
    imported(fresh, old)  # the field a version-3 file does not have is not read
    assert fresh.get_thread_ttl("kept") is None
    assert source.set_thread_ttl("kept", None)
    EffectJournal(source).restore(JournalEntry("kept", "", "call-1", Blob("json", b"1"), T0 + DAY))
    text = exported(source, since=T0 + DAY)  # the journal entry alone
    assert [json.loads(line)["type"] for line in text.splitlines()[1:]] == ["journal", "end"]
    imported(target, text)
    assert target.get_thread_ttl("kept") is None
    assert source.set_thread_ttl("kept", 30)
    source.restore(checkpoint("kept", "c2", T0 + 2 * DAY))
    imported(target, exported(source, since=T0 + 2 * DAY))
    assert target.get_thread_ttl("kept") == 30.0


def test_every_kind_round_trips_exactly(full: Stores) -> None:
    """Threads, checkpoints with values and writes, journal entries and memories (vectors,
    models, expiry) come back identical, every time included."""
    text = exported(list(full), tenant=T_ACME)
    types = [json.loads(line).get("type") for line in text.splitlines()]
    assert types == [
        None,
        *(["thread", "message", "message"] * 2),
        *(["checkpoint"] * 3 + ["journal"]) * 2,
        *["memory"] * 6,
        "end",
    ]
    target = memory_stores()
    counts = imported(list(target), text)
    assert counts == Counts(threads=2, messages=4, checkpoints=6, journal_entries=2, memories=6)
    assert everything(target) == everything(full)
    assert target[0].list_threads(tenant="beta") == []


def test_exporting_an_import_gives_the_same_file(full: Stores, tmp_path: Path) -> None:
    """Export, import into SQLite, export again: every line but the header is the same."""
    text = exported(list(full), tenant=T_ACME)
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    imported(url, text)
    assert exported(url, tenant=T_ACME).splitlines()[1:] == text.splitlines()[1:]


async def test_async_round_trip_of_every_kind_into_sqlite(full: Stores, tmp_path: Path) -> None:
    """The async twins write the same file and restore the same records."""
    out = io.StringIO()
    counts = await aexport_data(list(full), out, tenant=T_ACME)
    assert out.getvalue().splitlines()[1:] == exported(list(full), tenant=T_ACME).splitlines()[1:]
    out.seek(0)
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    target: Stores = (open_store(url), open_checkpoint_store(url), open_memory_store(url))
    assert await aimport_data(list(target), out) == counts
    assert everything(target) == everything(full)
    for store in target:
        await store.aclose()


def test_a_url_exports_and_imports_every_kind_it_opens(full: Stores, tmp_path: Path) -> None:
    """Given a URL, every kind it opens is exported or imported, and the stores are closed."""
    source_url, target_url = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    imported(source_url, exported(list(full), tenant=T_ACME))
    text = exported(source_url, tenant=T_ACME)
    assert imported(target_url, text).memories == 6
    opened: Stores = (
        open_store(target_url),
        open_checkpoint_store(target_url),
        open_memory_store(target_url),
    )
    assert everything(opened) == everything(full)


def test_kinds_choose_what_is_exported_and_imported(full: Stores) -> None:
    """kinds= leaves the other kinds out of a file, or out of an import."""
    only = exported(list(full), tenant=T_ACME, kinds="memories,checkpoints")
    header = json.loads(only.splitlines()[0])
    assert header["kinds"] == ["checkpoints", "memories"]
    assert {json.loads(line)["type"] for line in only.splitlines()[1:]} == {
        "checkpoint",
        "journal",
        "memory",
        "end",
    }
    text = exported(list(full), tenant=T_ACME)
    target = memory_stores()
    assert imported(list(target), text, kinds=["threads"]) == Counts(threads=2, messages=4)
    assert everything(target)["threads"] == everything(full)["threads"]
    assert everything(target)["checkpoints"] == everything(target)["memories"] == []


def test_a_kind_without_a_store_is_refused_before_writing(full: Stores) -> None:
    """A file holding checkpoints imported into a thread store alone raises InvalidInput."""
    target = open_store("memory://")
    with pytest.raises(InvalidInput, match="holds checkpoints, but no checkpoints store"):
        imported(target, exported(list(full), tenant=T_ACME))
    assert target.list_threads(tenant=T_ACME) == []
    assert imported(target, exported(list(full), tenant=T_ACME), kinds="threads").threads == 2


def test_import_into_another_tenant_moves_every_kind(full: Stores) -> None:
    """tenant= puts threads, checkpoints, journal entries and memory namespaces in that tenant."""
    target = memory_stores()
    imported(list(target), exported(list(full), tenant=T_ACME), tenant="copy")
    moved = everything(target, "copy")
    original = everything(full)
    assert [(i.thread_id, m) for i, m in moved["threads"]] == [
        (i.thread_id, m) for i, m in original["threads"]
    ]
    assert moved["checkpoints"] == original["checkpoints"]
    assert moved["journal"] == original["journal"]
    assert [(r.namespace[1:], r.id, r.created_at) for r in moved["memories"]] == [
        (r.namespace[1:], r.id, r.created_at) for r in original["memories"]
    ]
    assert everything(target)["memories"] == []


# Filters: the same selection on export, or on import of a full export, gives the same records.


def by_user(records: dict[str, Any], user: str) -> dict[str, Any]:
    return {
        "threads": [t for t in records["threads"] if t[0].metadata["user_id"] == user],
        "checkpoints": [c for c in records["checkpoints"] if c.metadata["user_id"] == user],
        "journal": [e for e in records["journal"] if e[0].thread_id == f"graph-{user}"],
        "memories": [r for r in records["memories"] if r.namespace[1] == user],
    }


@pytest.mark.parametrize("side", ["export", "import"])
def test_user_selects_that_users_records_in_every_kind(full: Stores, side: str) -> None:
    """user= keeps threads and checkpoint threads whose metadata names the user, and memories
    of namespaces (tenant, user, ...)."""
    target = memory_stores()
    if side == "export":
        counts = imported(list(target), exported(list(full), tenant=T_ACME, user="bob"))
    else:
        counts = imported(list(target), exported(list(full), tenant=T_ACME), user="bob")
    assert counts == Counts(threads=1, messages=2, checkpoints=3, journal_entries=1, memories=3)
    assert everything(target) == by_user(everything(full), "bob")


@pytest.mark.parametrize("side", ["export", "import"])
def test_since_and_until_select_records_by_their_time(full: Stores, side: str) -> None:
    """The window [T0 + 1 day, T0 + 2 days) keeps the messages, checkpoints, journal entries and
    memories stamped in it; threads come with only those messages."""
    window = {"since": T0 + DAY, "until": T0 + 2 * DAY}
    target = memory_stores()
    if side == "export":
        imported(list(target), exported(list(full), tenant=T_ACME, **window))
    else:
        imported(list(target), exported(list(full), tenant=T_ACME), **window)
    got = everything(target)
    assert [(i.thread_id, [m["id"] for m in ms]) for i, ms in got["threads"]] == [
        ("chat-bob", ["bob-1"]),
        ("chat-ann", ["ann-2"]),
    ]
    inside = [c for c in everything(full)["checkpoints"] if T0 + DAY <= c.created_at < T0 + 2 * DAY]
    assert [(c.thread_id, c.checkpoint_id) for c in got["checkpoints"]] == [
        (c.thread_id, c.checkpoint_id) for c in inside
    ]
    assert got["checkpoints"] == inside
    assert [[e.thread_id for e in entries] for entries in got["journal"]] == [["graph-ann"], []]
    assert {(r.namespace, r.id) for r in got["memories"]} == {
        ((T_ACME, "ann"), "kv:theme"),
        ((T_ACME, "bob"), "fact"),
    }


def test_a_thread_whose_metadata_changed_in_the_window_comes_without_messages() -> None:
    """A thread updated inside the window but with no message in it is exported empty."""
    store = open_store("memory://")
    store.append("t", Message(role="user", content="old", created_at=T0))
    store.restore_thread(ThreadInfo("t", "default", T0, T0 + 5 * DAY, 0, {"pinned": True}))
    text = exported(store, since=T0 + DAY)
    target = open_store("memory://")
    assert imported(target, text) == Counts(threads=1)
    assert target.get_thread("t") == ThreadInfo(
        "t", "default", T0, T0 + 5 * DAY, 0, {"pinned": True}
    )
    assert imported(open_store("memory://"), exported(store, until=T0)) == Counts()


def test_an_incremental_import_keeps_the_threads_times_and_order() -> None:
    """A backup up to a time, then the export since it, restore each thread's times (the newest
    update, the first creation) and order: the second import stamped its own time instead."""
    source = open_store("memory://")
    for thread_id in ("a", "b"):
        source.append(thread_id, Message(role="user", content="first", created_at=T0))
        source.restore_thread(ThreadInfo(thread_id, "default", T0, T0, 0, {}))
    for thread_id, day in (("a", 2), ("b", 3)):  # b is updated last
        source.append(thread_id, Message(role="user", content="second", created_at=T0 + day * DAY))
        source.restore_thread(ThreadInfo(thread_id, "default", T0, T0 + day * DAY, 0, {"n": day}))
    target = open_store("memory://")
    imported(target, exported(source, until=T0 + DAY))
    imported(target, exported(source, since=T0 + DAY))
    assert target.list_threads() == source.list_threads()
    assert [m.text for m in target.load("a")] == ["first", "second"]


def test_a_journal_without_checkpoints_is_exported_and_imported() -> None:
    """Tools journaled outside a LangGraph run leave a journal whose thread has no checkpoint:
    an export carries it, and an import restores it (tools then do not run again), as for
    threads that have checkpoints (it was left out)."""
    source = memory_stores()
    journal = EffectJournal(source[1])
    journal.record("tools-only", "call-1", {"charged": 42}, tenant=T_ACME)
    target = memory_stores()
    assert imported(list(target), exported(list(source), tenant=T_ACME)) == Counts(
        journal_entries=1
    )
    assert EffectJournal(target[1]).list_entries("tools-only", tenant=T_ACME) == (
        journal.list_entries("tools-only", tenant=T_ACME)
    )


# Clashes: a record already stored stops the import before it writes anything.


@pytest.mark.parametrize("kind", ["checkpoint", "journal", "memory"])
def test_a_stored_record_conflicts_and_nothing_is_imported(full: Stores, kind: str) -> None:
    """A checkpoint id, a journal call or a memory id already in the target raises Conflict
    naming its line, and the target is unchanged."""
    text = exported(list(full), tenant=T_ACME)
    target = memory_stores()
    if kind == "checkpoint":
        target[1].restore(graph_run("graph-bob", "bob", T0)[1], tenant=T_ACME)
    elif kind == "journal":
        EffectJournal(target[1]).record("graph-bob", "call-1", "mine", tenant=T_ACME)
    else:
        target[2].put((T_ACME, "bob"), "mine", id="kv:theme")
    before = everything(target)
    with pytest.raises(Conflict, match=r"line \d+: .*'graph-bob'|line \d+: .*kv:theme"):
        imported(list(target), text)
    assert everything(target) == before


# Malformed files of version 2: each edit of a valid export raises InvalidInput naming the line,
# and nothing is imported.


def v2_lines(full: Stores) -> list[str]:
    return exported(list(full), tenant=T_ACME).splitlines()


def first(lines: list[str], kind: str) -> int:
    """The index of the first line of ``kind``."""
    return next(i for i, line in enumerate(lines) if json.loads(line).get("type") == kind)


def edited(kind: str, **changes: Any) -> Callable[[list[str]], list[str]]:
    """Change fields of the first line of ``kind``."""

    def edit(lines: list[str]) -> list[str]:
        i = first(lines, kind)
        lines[i] = json.dumps({**json.loads(lines[i]), **changes})
        return lines

    return edit


def moved_last(kind: str) -> Callable[[list[str]], list[str]]:
    """Move the first line of ``kind`` to just before the end line."""

    def edit(lines: list[str]) -> list[str]:
        line = lines.pop(first(lines, kind))
        return [*lines[:-1], line, lines[-1]]

    return edit


def header(**changes: Any) -> Callable[[list[str]], list[str]]:
    """Change fields of the header."""

    def edit(lines: list[str]) -> list[str]:
        return [json.dumps({**json.loads(lines[0]), **changes}), *lines[1:]]

    return edit


def duplicated(kind: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        i = first(lines, kind)
        return [*lines[: i + 1], lines[i], *lines[i + 1 :]]

    return edit


V2_CASES: list[tuple[str, Callable[[list[str]], list[str]], str]] = [
    ("thread ttl", edited("thread", ttl_seconds=-1), "ttl_seconds must be a number of seconds"),
    ("thread ttl text", edited("thread", ttl_seconds="60"), "ttl_seconds must be a number"),
    (
        "checkpoint thread ttl",
        edited("checkpoint", thread_ttl_seconds=-1),
        "thread_ttl_seconds must be a number of seconds",
    ),
    (
        "checkpoint thread ttl text",
        edited("checkpoint", thread_ttl_seconds="60"),
        "thread_ttl_seconds must be a number",
    ),
    (
        "checkpoint thread ttl bool",
        edited("checkpoint", thread_ttl_seconds=True),
        "thread_ttl_seconds must be a number",
    ),
    (
        "checkpoint thread ttl inside",
        edited("journal", thread_ttl_seconds=60),
        "thread_ttl_seconds on a line that does not open checkpoint thread 'graph-ann' .line 8",
    ),
    ("no end line", lambda lines: lines[:-1], "ends without its end line .*truncated"),
    ("after end", lambda lines: [*lines, lines[1]], "a line after the end line"),
    ("end counts", edited("end", counts={"threads": 1}), "the end line needs counts"),
    (
        "wrong count",
        lambda lines: [
            *lines[:-1],
            json.dumps(
                {
                    "type": "end",
                    "counts": {
                        "threads": 2,
                        "messages": 4,
                        "checkpoints": 6,
                        "journal_entries": 2,
                        "memories": 5,
                    },
                }
            ),
        ],
        "the end line counts .*memories=5.* but the file holds .*memories=6",
    ),
    ("unknown kind", header(kinds=["threads", "notes"]), "header's kinds"),
    ("kind not in header", header(kinds=["threads", "memories"]), "a checkpoint line, but"),
    ("no tenant", header(tenant=""), "the header's tenant must not be empty"),
    ("other tenant", edited("checkpoint", tenant="beta"), "tenant 'beta', but the header"),
    (
        "bad base64",
        edited("checkpoint", body={"tag": "msgpack", "data": "not base64!"}),
        "the body is not valid base64",
    ),
    ("no body tag", edited("checkpoint", body={"data": "AA=="}), "body must be an object"),
    (
        "value list",
        edited("checkpoint", values={"messages": {"tag": "x", "items": "AA=="}}),
        "items",
    ),
    ("naive time", edited("checkpoint", created_at="2026-01-01T00:00:00"), "timezone-aware"),
    ("no versions", edited("checkpoint", versions=None), "versions and values must be"),
    ("bad write", edited("checkpoint", writes=[{"task_id": "t"}]), "not a valid checkpoint"),
    (
        "write idx",
        edited(
            "checkpoint",
            writes=[
                {
                    "task_id": "t",
                    "idx": "0",
                    "channel": "c",
                    "task_path": "",
                    "value": {"tag": "j", "data": ""},
                }
            ],
        ),
        "write idx must be a 32-bit int",
    ),
    ("value no version", edited("checkpoint", versions={}), "has a value but no version"),
    ("empty checkpoint id", edited("checkpoint", checkpoint_id=""), "checkpoint id must not"),
    ("twice", duplicated("checkpoint"), "checkpoint 'c1' .* appears twice"),
    ("thread split", moved_last("checkpoint"), "checkpoint thread 'graph-ann' .* two places"),
    ("journal twice", duplicated("journal"), "journal entry 'call-1' .* appears twice"),
    ("journal value", edited("journal", value="x"), "entry's value must be an object"),
    ("journal time", edited("journal", recorded_at=None), "recorded_at must be a string"),
    ("memory twice", duplicated("memory"), "memory id 'fact' appears twice"),
    ("namespace split", moved_last("memory"), "namespace .* appears in two places"),
    ("memory tenant", edited("memory", namespace=["beta", "ann"]), "tenant 'beta', but"),
    ("no namespace", edited("memory", namespace=[]), "at least the tenant label"),
    ("label", edited("memory", namespace=["acme", ""]), "namespace label must not be empty"),
    ("vector bytes", edited("memory", embedding="AAA="), "whole float32 numbers"),
    ("vector length", edited("memory", embedding="AACAPw=="), "1 dimensions but this store"),
    ("importance", edited("memory", importance=2), "importance must be a number from 0 to 1"),
    ("importance str", edited("memory", importance="high"), "importance must be a number"),
    ("memory value", edited("memory", value=[1]), "a memory's value must be a JSON object"),
    ("no last use", edited("memory", last_used_at=None), "last_used_at must be a string"),
    ("memory text", edited("memory", text=None), "text must be a string"),
    ("unknown type", edited("journal", type="note"), "unknown line type 'note'"),
]


@pytest.mark.parametrize(
    ("edit", "error"), [case[1:] for case in V2_CASES], ids=[case[0] for case in V2_CASES]
)
def test_malformed_v2_input_raises_naming_the_line_and_imports_nothing(
    full: Stores, edit: Callable[[list[str]], list[str]], error: str
) -> None:
    """A bad line raises InvalidInput naming its number; no store is changed."""
    target = memory_stores()
    target[0].append("keep", Message(role="user", content="untouched"), tenant=T_ACME)
    before = everything(target)
    with pytest.raises(InvalidInput, match=rf"line \d+: .*{error}"):
        imported(list(target), "\n".join(edit(v2_lines(full))) + "\n")
    assert everything(target) == before
