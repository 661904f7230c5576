"""Export and import of threads: the JSON-lines format, exact round trips, and bad input."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import memfold.export as export_module
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
from memfold.export import (
    FORMAT_VERSION,
    aexport_threads,
    aimport_threads,
    export_threads,
    import_threads,
    iter_threads,
)
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


def exported(store: BaseThreadStore, **kwargs: Any) -> str:
    out = io.StringIO()
    export_threads(store, out, **kwargs)
    return out.getvalue()


def snapshot(store: BaseThreadStore, tenant: str = "default") -> Snapshot:
    """Everything a tenant holds, including thread times (so any write shows)."""
    return [
        (info, [m.to_dict() for m in store.load(info.thread_id, tenant=tenant)])
        for info in iter_threads(store, tenant=tenant)
    ]


def assert_same_threads(a: BaseThreadStore, b: BaseThreadStore, tenant: str = "default") -> None:
    """Both stores hold the same threads, metadata and messages (field for field)."""
    left = {info.thread_id: info for info in iter_threads(a, tenant=tenant)}
    right = {info.thread_id: info for info in iter_threads(b, tenant=tenant)}
    assert left.keys() == right.keys()
    for thread_id, info in left.items():
        assert right[thread_id].metadata == info.metadata
        assert right[thread_id].message_count == info.message_count
        mine = [m.to_dict() for m in a.load(thread_id, tenant=tenant)]
        theirs = [m.to_dict() for m in b.load(thread_id, tenant=tenant)]
        assert theirs == mine


def test_export_writes_a_header_then_each_thread_followed_by_its_messages(
    source: BaseThreadStore,
) -> None:
    """The file is a header line, then per thread one thread line and its messages in order."""
    lines = [json.loads(line) for line in exported(source).splitlines()]
    header = lines[0]
    assert header["format"] == "memfold"
    assert header["version"] == FORMAT_VERSION == 1
    assert header["kind"] == "threads"
    assert header["tenant"] == "default"
    blocks: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for line in lines[1:]:
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
        assert import_threads(target, io.StringIO(text)) == 2
        assert_same_threads(source, target)
        assert target.list_threads(tenant="acme") == []


async def test_async_twins_round_trip_through_sqlite(
    source: BaseThreadStore, tmp_path: Path
) -> None:
    """aexport_threads and aimport_threads round-trip exactly, on the async engine."""
    out = io.StringIO()
    assert await aexport_threads(source, out, tenant="acme") == 1
    assert out.getvalue().splitlines()[1:] == exported(source, tenant="acme").splitlines()[1:]
    out.seek(0)
    target = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        assert await aimport_threads(target, out) == 1
        assert_same_threads(source, target, tenant="acme")
    finally:
        await target.aclose()
        target.close()


async def test_async_export_of_named_threads_matches_sync(source: BaseThreadStore) -> None:
    """aexport_threads with thread_ids writes the same blocks as export_threads."""
    out = io.StringIO()
    assert await aexport_threads(source, out, thread_ids=["empty"]) == 1
    assert (
        out.getvalue().splitlines()[1:] == exported(source, thread_ids=["empty"]).splitlines()[1:]
    )


def test_export_of_named_threads_writes_only_those(source: BaseThreadStore) -> None:
    """thread_ids limits the export to those threads, each once, in the order given."""
    text = exported(source, thread_ids=["empty", "chat", "empty"])
    lines = [json.loads(line) for line in text.splitlines()]
    threads = [line["thread_id"] for line in lines if line.get("type") == "thread"]
    assert threads == ["empty", "chat"]
    assert len(lines) == 1 + 2 + len(chat_messages())


def test_export_of_an_unknown_thread_raises_before_writing(source: BaseThreadStore) -> None:
    """A missing thread id raises NotFound and nothing is written."""
    out = io.StringIO()
    with pytest.raises(NotFound, match="nope"):
        export_threads(source, out, thread_ids=["chat", "nope"])
    assert out.getvalue() == ""


def test_export_arguments_are_checked_before_writing(source: BaseThreadStore) -> None:
    """A bare str for thread_ids or an invalid tenant raises InvalidInput and writes nothing."""
    out = io.StringIO()
    with pytest.raises(InvalidInput, match="not one str"):
        export_threads(source, out, thread_ids="chat")
    with pytest.raises(InvalidInput, match="tenant must not be empty"):
        export_threads(source, out, tenant="")
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
    """The export progress callback adds up to the number of messages written."""
    calls: list[int] = []
    export_threads(source, io.StringIO(), progress=calls.append)
    assert calls == [1] * len(chat_messages())


def test_import_appends_in_batches_and_reports_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long thread is appended BATCH_SIZE messages at a time, each batch reported."""
    monkeypatch.setattr(export_module, "BATCH_SIZE", 2)
    store = open_store("memory://")
    store.append("long", [Message(role="user", content=str(i)) for i in range(5)])
    target = open_store("memory://")
    calls: list[int] = []
    import_threads(target, io.StringIO(exported(store)), progress=calls.append)
    assert calls == [2, 2, 1]
    assert_same_threads(store, target)


def test_import_into_another_tenant(source: BaseThreadStore) -> None:
    """tenant= puts every imported thread under that tenant."""
    target = open_store("memory://")
    import_threads(target, io.StringIO(exported(source)), tenant="copy")
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
    import_threads(target, io.StringIO(exported(source)))
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
        import_threads(target, io.StringIO(text))
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
    assert import_threads(target, Unseekable(exported(source))) == 2
    assert_same_threads(source, target)


def test_import_ignores_blank_lines(source: BaseThreadStore) -> None:
    """Blank lines between records are skipped."""
    text = "\n\n".join(exported(source).splitlines()) + "\n\n  \n"
    target = open_store("memory://")
    assert import_threads(target, io.StringIO(text)) == 2
    assert_same_threads(source, target)


def test_an_export_with_no_threads_imports_nothing() -> None:
    """The header alone is a valid, empty export."""
    text = exported(open_store("memory://"))
    assert len(text.splitlines()) == 1
    target = open_store("memory://")
    assert import_threads(target, io.StringIO(text)) == 0
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
    ("newer version", _set(1, {**HEADER, "version": 2}), "line 1: .*version 2.*upgrade memfold"),
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
    ("no thread id", _set(4, {**_thread("b", 2), "thread_id": ""}), "line 4: thread id"),
    ("metadata list", _set(4, _thread("b", 2, metadata=[1])), "line 4: thread metadata"),
    ("twice", _set(4, _thread("a", 2)), "line 4: thread 'a' of tenant 'default' appears twice"),
    ("orphan", lambda lines: [lines[0], lines[2]], "line 2: a message line before any thread"),
    ("surrogate", _set(5, json.dumps(_message("b", "b1", content="\ud800"))), "line 5: .*Unicode"),
    (
        "arguments list",
        _set(5, _message("b", "b1", tool_calls=[{"id": "c", "name": "f", "arguments": [1]}])),
        "line 5: not a valid message: TypeError",
    ),
    (
        "part text not str",
        _set(5, _message("b", "b1", content=[{"type": "text", "text": 5}])),
        "line 5: not a valid message: TypeError",
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
        import_threads(target, io.StringIO("\n".join(edit(base_lines())) + "\n"))
    assert snapshot(target) == before


def test_the_base_file_of_the_malformed_cases_is_valid() -> None:
    """Unedited, the file the malformed cases start from imports both threads."""
    target = open_store("memory://")
    assert import_threads(target, io.StringIO("\n".join(base_lines()))) == 2
    assert [m.id for m in target.load("b")] == ["b1", "b2"]


def test_text_that_is_not_utf8_is_invalid_input() -> None:
    """Bytes that do not decode as UTF-8 raise InvalidInput, from a file or from a pipe."""
    raw = ("\n".join(base_lines()[:3]) + "\n").encode() + b'{"type": "\xff"}\n'
    target = open_store("memory://")
    seekable = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    with pytest.raises(InvalidInput, match="UTF-8"):
        import_threads(target, seekable)

    class Pipe(io.TextIOWrapper):
        def seekable(self) -> bool:
            return False

    with pytest.raises(InvalidInput, match="UTF-8"):
        import_threads(target, Pipe(io.BytesIO(raw), encoding="utf-8"))
    assert target.list_threads() == []
