"""Hostile export files and arguments to export, import and migrate, on memory and SQLite: a
malformed file (a field set to a hostile value or dropped, lines dropped, doubled, swapped or cut,
raw bytes, invalid UTF-8, deep nesting, numbers JSON cannot round-trip) imports entirely or raises
a `memfold.errors` error having imported nothing; every line reader reads back exactly what its
writer wrote, or refuses; and the target's other data is unchanged either way."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError, Message, ThreadInfo, export, importer, open_store
from memfold.checkpoints import Blob, Checkpoint, PendingWrite, SequenceBlob, open_checkpoint_store
from memfold.export import StoreSet, aiter_threads, export_data, iter_threads
from memfold.export_format import (
    Selection,
    bad,
    check_kinds,
    checkpoint_line,
    dumps,
    end_line,
    header_line,
    journal_line,
    memory_line,
    message_line,
    read_checkpoint,
    read_checkpoint_thread_ttl,
    read_end,
    read_header,
    read_journal,
    read_lines,
    read_memory,
    read_message,
    read_thread,
    read_thread_ttl,
    thread_line,
    with_thread_ttl,
)
from memfold.importer import import_data
from memfold.journal import EffectJournal, JournalEntry
from memfold.memories import MemoryRecord, open_memory_store
from memfold.migrate import amigrate, migrate
from memfold.open import AnyStore
from memfold.recall.embedders import HashingEmbedder
from tests.reliability.fuzzing import (
    FUZZ,
    FUZZ_SLOW,
    call,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    json_values,
    messages,
    numbers,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CANARY = "memfold-canary"
DIMS = 8
NUMBERS = numbers(-3, 30, booleans=False)
TIMES = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.sampled_from([T0, "2026-01-01", 0]),
)


def open_target(backend: str, tmp_path: Path, tenant: str) -> list[AnyStore]:
    """A thread, checkpoint and memory store of ``backend``, holding for ``tenant`` a thread
    with metadata, a checkpoint thread with values, writes and a journal entry, and memories."""
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'target.db'}"
    threads = open_store(url)
    threads.append(
        "chat",
        [Message(role="user", content="hi", metadata={"user_id": "ann"}, created_at=T0),
         Message(role="assistant", content="yo", id="m2", created_at=T0)],
        tenant=tenant,
    )  # fmt: skip
    threads.set_thread_metadata("chat", {"user_id": "ann"}, tenant=tenant)
    checkpoints = open_checkpoint_store(url)
    checkpoints.put(
        "graph", "c1", Blob("json", b"{}"), metadata={"user_id": "ann"}, versions={"m": 1},
        values={"m": SequenceBlob("msgpack", (b"a", b"b"))}, tenant=tenant,
    )  # fmt: skip
    checkpoints.put_writes(
        "graph", "c1", [PendingWrite("task", 0, "m", Blob("json", b"1"))], tenant=tenant
    )
    EffectJournal(checkpoints).record("graph", "call-1", {"ok": True}, tenant=tenant)
    memories = open_memory_store(url, embedder=HashingEmbedder(DIMS))
    memories.put((tenant, "ann"), "likes tea", {"k": [1, 2]}, id="r1")
    memories.put((tenant, "bob"), "likes coffee", id="r2")
    return [threads, checkpoints, memories]


@pytest.fixture(scope="module")
def export_lines() -> list[str]:
    """An export of tenant ``fuzz`` holding every kind of line."""
    stores = open_target("memory", Path(), "fuzz")
    out = io.StringIO()
    export_data(stores, out, tenant="fuzz")
    return out.getvalue().splitlines()


def snapshot(stores: list[AnyStore], tenant: str) -> str:
    """Everything ``tenant`` holds, as its export without the header's time."""
    out = io.StringIO()
    try:
        export_data(stores, out, tenant=tenant)
    except MemfoldError as exc:
        return f"refused: {exc}"
    lines = out.getvalue().splitlines()
    return "\n".join(lines[1:])


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    """Whether export, import and migrate run through their async twins."""
    return request.param == "async"


@pytest.fixture(params=["memory", "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[AnyStore]]:
    """Stores of each backend holding the canary tenant's data."""
    stores = open_target(request.param, tmp_path, CANARY)
    yield stores
    for store in stores:
        store.close()


def json_able() -> st.SearchStrategy[Any]:
    """Hostile values as they can appear in a file: anything `json_values` draws that JSON can
    write (NaN and infinity included, as Python writes them)."""

    def writable(value: Any) -> Any:
        try:
            json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            return None
        return value

    return json_values(max_leaves=6).map(writable)


RAW_LINES = [
    b"", b"{", b"[]", b"null", b"\xff\xfe\x00", b'{"a": 1e999}', b"[" * 5_000 + b"]" * 5_000,
    b'{"type": "message"}', b'{"type": "end", "counts": {}}', b'{"format": "memfold"}',
    b'{"format": "memfold", "version": 99}', b'{"type": "thread", "thread_id": "x"}',
    b'{"a": NaN}', b'{"a": 1, "a": 2}', b"\xed\xa0\x80", b'"\\ud800"', b'{"x": "\\u0000"}',
]  # fmt: skip


@st.composite
def corrupted(draw: st.DrawFn, lines: list[str]) -> bytes:
    """``lines`` after one to three hostile edits, as the bytes of a file."""
    rows: list[Any] = [json.loads(line) for line in lines]
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["set", "set", "drop key", "line", "raw", "cut", "swap"]))
        i = draw(st.integers(0, len(rows) - 1))
        row = rows[i]
        if edit in ("set", "drop key") and isinstance(row, dict):
            parent, key = row, draw(st.sampled_from(sorted(row)) | hostile_text(max_size=6))
            while isinstance(parent.get(key), dict) and parent[key] and draw(st.booleans()):
                parent, key = parent[key], draw(st.sampled_from(sorted(parent[key])))
            if edit == "set":
                parent[key] = draw(json_able())
            else:
                parent.pop(key, None)
        elif edit == "line":
            if draw(st.booleans()):
                rows.insert(i, rows[i])
            else:
                del rows[i]
        elif edit == "raw":
            rows[i] = draw(st.sampled_from(RAW_LINES) | st.binary(max_size=40))
        elif edit == "cut":
            rows = rows[:i]
        elif len(rows) > 1:
            j = draw(st.integers(0, len(rows) - 1))
            rows[i], rows[j] = rows[j], rows[i]
        if not rows:
            break
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows)


def text_stream(data: bytes) -> io.TextIOWrapper:
    """``data`` read as the CLI reads a file: UTF-8, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


@FUZZ_SLOW
@given(data=st.data())
async def test_a_corrupted_export_imports_whole_or_not_at_all(
    target: list[AnyStore], use_async: bool, export_lines: list[str], data: st.DataObject
) -> None:
    """A corrupted export imports, or raises a memfold error with nothing of it stored; the
    canary tenant is unchanged either way, and what an import stored exports again."""
    raw = data.draw(corrupted(export_lines))
    tenants = {CANARY, "fuzz"}
    try:
        header = json.loads(raw.split(b"\n", 1)[0])
        if isinstance(header, dict) and isinstance(header.get("tenant"), str):
            tenants.add(header["tenant"])
    except (ValueError, RecursionError):
        pass
    before = {t: snapshot(target, t) for t in tenants}
    try:
        await call(use_async, importer, "import_data", target, text_stream(raw))
    except MemfoldError:
        assert {t: snapshot(target, t) for t in tenants} == before
    else:
        assert snapshot(target, CANARY) == before[CANARY]
        for tenant in tenants - {CANARY}:
            assert not snapshot(target, tenant).startswith("refused")
    assert not snapshot(target, CANARY).startswith("refused")


@FUZZ_SLOW
@given(
    kinds=st.none()
    | hostile_ids()
    | st.lists(st.sampled_from(["threads", "memories"]) | hostile_ids()),
    tenant=st.none() | hostile_ids(),
    user=st.none() | hostile_ids(),
    since=TIMES,
    until=TIMES,
    thread_ids=st.none() | st.lists(hostile_ids(), max_size=2) | hostile_ids(),
    progress=st.sampled_from([None, print, "not callable", lambda kind, n: None]),
)
async def test_export_and_import_arguments_answer_or_refuse(
    target: list[AnyStore],
    use_async: bool,
    export_lines: list[str],
    kinds: Any,
    tenant: Any,
    user: Any,
    since: Any,
    until: Any,
    thread_ids: Any,
    progress: Any,
) -> None:
    """Hostile kinds, tenants, users, times, thread ids and progress callbacks make export and
    import (and StoreSet, iter_threads, Selection) answer or raise a memfold error, and an
    import into a chosen tenant never reaches the canary's."""
    before = snapshot(target, CANARY)
    out = io.StringIO()
    with contextlib.suppress(MemfoldError):
        await call(use_async, export, "export_data", target, out, kinds=kinds, tenant=tenant,
                   user=user, since=since, until=until, thread_ids=thread_ids,
                   progress=progress)  # fmt: skip
    with contextlib.suppress(MemfoldError):
        if use_async:
            [i async for i in aiter_threads(target[0], tenant=tenant, page_size=thread_ids)]  # type: ignore[arg-type]
        else:
            list(iter_threads(target[0], tenant=tenant, page_size=thread_ids))  # type: ignore[arg-type]
    for helper in (
        lambda: StoreSet.of(kinds).close(),
        lambda: StoreSet.of(target).choose(kinds),
        lambda: StoreSet.of(target).tenant(tenant),
        lambda: Selection(user, since, until).covers(T0),
        lambda: Selection(user).owns({"user_id": tenant}),
        lambda: Selection(user).owns_namespace((str(tenant), str(user))),
        lambda: check_kinds(kinds),
    ):
        with contextlib.suppress(MemfoldError):
            helper()
    if tenant != CANARY:
        with contextlib.suppress(MemfoldError):
            await call(use_async, importer, "import_data", target,
                       io.StringIO("\n".join(export_lines)), kinds=kinds, tenant=tenant,
                       user=user, since=since, until=until, progress=progress)  # fmt: skip
    assert snapshot(target, CANARY) == before


def opened(url: str) -> list[AnyStore]:
    """Every store kind at ``url``."""
    return [open_store(url), open_checkpoint_store(url),
            open_memory_store(url, embedder=HashingEmbedder(DIMS))]  # fmt: skip


@pytest.fixture
def source_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL of a SQLite file holding tenant ``fuzz``'s data, in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    for store in open_target("sqlite", tmp_path, "fuzz"):
        store.close()
    return f"sqlite:///{tmp_path / 'target.db'}"


@FUZZ_SLOW
@given(
    tenant=st.just("fuzz") | hostile_ids(),
    thread_ids=st.none() | st.lists(hostile_ids(), max_size=2) | hostile_ids(),
    batch_size=NUMBERS,
    target_url=st.sampled_from(["memory://", "sqlite:///copy.db", "nope://", ""]) | hostile_ids(),
)
async def test_migrate_answers_or_refuses(
    source_db: str,
    use_async: bool,
    tenant: Any,
    thread_ids: Any,
    batch_size: Any,
    target_url: Any,
) -> None:
    """`migrate` between URLs or stores with hostile tenants, thread ids, batch sizes and
    target URLs answers or raises a memfold error, and leaves its source unchanged."""
    stores = opened(source_db)
    before = snapshot(stores, "fuzz")
    for store in stores:
        store.close()
    for source, target in ((source_db, target_url), (open_store(source_db), open_store())):
        with contextlib.suppress(MemfoldError):
            options = {"thread_ids": thread_ids, "tenant": tenant, "batch_size": batch_size}
            if use_async:
                await amigrate(source, target, **options)
            else:
                migrate(source, target, **options)
    stores = opened(source_db)
    assert snapshot(stores, "fuzz") == before
    for store in stores:
        store.close()


# Each line's writer and reader.


def round_trip(write: Callable[[], dict[str, Any]], read: Callable[[dict[str, Any]], Any]) -> Any:
    """What ``read`` makes of the line ``write`` wrote, through the file's JSON text; None if
    either refused with a memfold error."""
    try:
        text = dumps(write())
    except MemfoldError:
        return None
    assert text.endswith("\n")
    ((number, line),) = list(read_lines(io.StringIO(text)))
    assert number == 1
    try:
        return read(line)
    except MemfoldError:
        return None


def stored(store_call: Callable[[], Any]) -> Any:
    """What a memory store made of a value (the value as stored), or None if it refused it:
    the writers promise exact round trips for what a store holds."""
    try:
        return store_call()
    except MemfoldError:
        return None


@FUZZ
@given(
    message=messages(),
    tenant=hostile_ids(),
    thread_id=hostile_ids(),
    metadata=json_objects(),
    count=NUMBERS,
    ttl=NUMBERS,
)
def test_message_and_thread_lines_read_back_exactly_or_refuse(
    message: Message, tenant: Any, thread_id: Any, metadata: Any, count: Any, ttl: Any
) -> None:
    """A message or thread a store holds, whatever hostile fields it was given, is written as a
    line that reads back exactly (the thread's count is refused unless it is an int, and its
    TTL, read by read_thread_ttl, unless it is a number of seconds the stores take)."""
    store = open_store()
    kept = stored(lambda: store.append(thread_id, message, tenant=tenant)[0])
    if kept is not None:
        resolved = store.resolve_tenant(tenant)  # None: the default tenant
        got = round_trip(
            lambda: message_line(resolved, thread_id, kept), lambda d: read_message(1, d)
        )
        assert got == kept
    info = stored(lambda: store.restore_thread(ThreadInfo(thread_id, tenant, T0, T0, 0, metadata)))
    if info is not None:
        got = round_trip(lambda: thread_line(info, count), lambda d: read_thread(1, d))
        assert got in (None, ThreadInfo(thread_id, tenant, T0, T0, count, info.metadata))
        got = round_trip(lambda: thread_line(info, 0, ttl), lambda d: read_thread_ttl(1, d))
        assert got is None or (got == ttl and type(got) is float)
        if got is None and ttl is not None:
            with contextlib.suppress(MemfoldError):  # refused alike by the store itself
                assert not store.set_thread_ttl(thread_id, ttl, tenant=tenant)


def blobs() -> st.SearchStrategy[Any]:
    tags = st.sampled_from(["json", "msgpack"]) | hostile_ids()
    return st.builds(Blob, tags, st.binary(max_size=16)) | st.builds(
        SequenceBlob, tags, st.lists(st.binary(max_size=8), max_size=3).map(tuple)
    )


@FUZZ
@given(
    tenant=hostile_ids(),
    ids=st.tuples(hostile_ids(), hostile_ids(), hostile_ids() | st.none(), hostile_ids()),
    metadata=json_objects(),
    channel=hostile_keys(),
    version=NUMBERS | hostile_text(),
    value=blobs(),
    write=st.builds(PendingWrite, hostile_ids(), NUMBERS, hostile_ids(), blobs(), hostile_ids()),
    text=hostile_text(),
    namespace=st.lists(hostile_text(max_size=8), max_size=3).map(tuple),
    embedding=st.none() | st.lists(st.floats(width=32), min_size=DIMS, max_size=DIMS).map(tuple),
    importance=NUMBERS,
    ttl=NUMBERS,
)
def test_checkpoint_journal_and_memory_lines_read_back_exactly_or_refuse(
    tenant: Any,
    ids: tuple[Any, Any, Any, Any],
    metadata: Any,
    channel: Any,
    version: Any,
    value: Any,
    write: PendingWrite,
    text: Any,
    namespace: Any,
    embedding: Any,
    importance: Any,
    ttl: Any,
) -> None:
    """A checkpoint, journal entry or memory a store holds, whatever hostile ids, blobs,
    versions, writes, text, namespaces, embeddings and numbers it was given, is written as a
    line that reads back exactly; a checkpoint thread's first line (checkpoint or journal)
    also carries its own TTL (with_thread_ttl), which read_checkpoint_thread_ttl reads back or
    refuses unless it is a number of seconds the stores take."""
    thread_id, checkpoint_id, parent_id, namespace_id = ids
    checkpoint = Checkpoint(
        thread_id, namespace_id, checkpoint_id, parent_id, T0, metadata, Blob("json", b"{}"),
        {channel: version}, {channel: value}, (write,),
    )  # fmt: skip
    checkpoints = open_checkpoint_store()
    kept = stored(lambda: checkpoints.restore(checkpoint, tenant=tenant) or checkpoints.get(
        thread_id, namespace=namespace_id, checkpoint_id=checkpoint_id, tenant=tenant))  # fmt: skip
    if kept is not None:
        tenant = checkpoints.resolve_tenant(tenant)  # None: the default tenant
        got = round_trip(lambda: checkpoint_line(tenant, kept), lambda d: read_checkpoint(1, d))
        assert got == (tenant, kept)
        first = lambda: with_thread_ttl(checkpoint_line(tenant, kept), ttl)  # noqa: E731
        assert round_trip(first, lambda d: read_checkpoint(1, d)) in (None, (tenant, kept))
        got = round_trip(first, lambda d: read_checkpoint_thread_ttl(1, d))
        assert got is None or (got == ttl and type(got) is float)
        if got is None and ttl is not None:
            with contextlib.suppress(MemfoldError):  # refused alike by the store itself
                assert not checkpoints.set_thread_ttl(thread_id, ttl, tenant=tenant)
    entry = JournalEntry(thread_id, namespace_id, checkpoint_id, value, T0)
    kept = stored(lambda: EffectJournal(checkpoints).restore(entry, tenant=tenant))
    if kept is not None:
        tenant = checkpoints.resolve_tenant(tenant)
        got = round_trip(lambda: journal_line(tenant, kept), lambda d: read_journal(1, d))
        assert got == (tenant, kept)
        line = lambda: with_thread_ttl(journal_line(tenant, kept), ttl)  # noqa: E731
        assert round_trip(line, lambda d: read_journal(1, d)) in (None, (tenant, kept))
        got = round_trip(line, lambda d: read_checkpoint_thread_ttl(1, d))
        assert got is None or (got == ttl and type(got) is float)
    record = MemoryRecord((tenant, *namespace), checkpoint_id, text, metadata, embedding,
                          "hashing-8", importance, None, T0, T0, T0)  # fmt: skip
    memories = open_memory_store(embedder=HashingEmbedder(DIMS))
    kept = stored(lambda: memories.restore_many([record])[0])
    if kept is not None:
        assert round_trip(lambda: memory_line(kept), lambda d: read_memory(1, d)) == kept


@FUZZ
@given(
    kinds=st.lists(st.sampled_from(["threads", "checkpoints", "memories"]) | hostile_text()),
    tenant=hostile_ids(),
    user=st.none() | hostile_ids(),
    counts=st.dictionaries(hostile_text(max_size=10), NUMBERS, max_size=3),
    line=st.dictionaries(
        st.sampled_from(
            [
                "type",
                "format",
                "version",
                "kinds",
                "tenant",
                "counts",
                "thread_id",
                "message",
                "namespace",
                "id",
                "value",
                "body",
                "writes",
                "thread_ttl_seconds",
            ]
        ),
        json_able(),
    ),
)
def test_header_end_and_arbitrary_lines_read_or_refuse(
    kinds: list[Any], tenant: Any, user: Any, counts: dict[str, Any], line: dict[str, Any]
) -> None:
    """A header or end line with hostile kinds, tenants, users and counts, and any object at
    all given to each reader, is read or refused with a memfold error."""
    try:
        selection = Selection(user)
        header = read_header(1, header_line(kinds, tenant, selection, T0, "0"))
    except MemfoldError:
        pass
    else:
        assert (header.kinds, header.tenant) == (tuple(kinds), tenant)
    with contextlib.suppress(MemfoldError):
        read_end(2, {**end_line(read_end(1, {"counts": counts})), "type": "end"})
    for reader in (read_header, read_end, read_thread, read_thread_ttl, read_message,
                   read_checkpoint, read_checkpoint_thread_ttl, read_journal,
                   read_memory):  # fmt: skip
        try:
            reader(7, line)
        except MemfoldError as exc:
            assert str(exc).startswith("line 7")  # noqa: PT017
    assert str(bad(3, "x")) == "line 3: x"


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_lines_are_refused(depth: int) -> None:
    """A line nested up to 100,000 levels deep is refused naming its line, not with a
    RecursionError."""
    deep = '{"k":' * depth + '"bottom"' + "}" * depth
    line = '{"type": "message", "message": {"metadata": ' + deep + "}}"
    with pytest.raises(MemfoldError, match="line 1"):
        import_data(open_store(), io.StringIO(line))


@pytest.mark.parametrize(
    "call",
    [
        lambda: export_data(open_store(), io.StringIO(), thread_ids=0),  # type: ignore[arg-type]
        lambda: migrate(open_store(), open_store(), thread_ids=0),  # type: ignore[arg-type]
        lambda: check_kinds(None),  # type: ignore[arg-type]
        lambda: dumps({"a": {1, 2}}),  # type: ignore[dict-item]
        lambda: dumps({"a": float("nan")}),
    ],
    ids=["export thread_ids", "migrate thread_ids", "check_kinds None", "dumps set", "dumps nan"],
)
def test_arguments_that_used_to_raise_type_errors(call: Callable[[], Any]) -> None:
    """Regression: thread_ids that is not a list (TypeError), kinds that is not a collection
    (TypeError), and a line holding a set or NaN (TypeError, ValueError) are InvalidInput."""
    with pytest.raises(InvalidInput):
        call()
