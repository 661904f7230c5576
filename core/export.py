"""Export threads to, and import them from, a versioned JSON-lines file.

The format (``version`` 1) is UTF-8 text with one JSON object per line. The first line is a
header; then each thread is one ``thread`` line followed by exactly ``message_count`` ``message``
lines, oldest first:

```text
{"format": "memfold", "version": 1, "kind": "threads", "tenant": "default",
 "exported_at": "2026-01-01T00:00:00+00:00", "memfold_version": "0.1.0"}
{"type": "thread", "thread_id": "t1", "tenant": "default", "created_at": "...",
 "updated_at": "...", "message_count": 1, "metadata": {"topic": "demo"}}
{"type": "message", "thread_id": "t1", "tenant": "default",
 "message": {"role": "user", "content": "hi", "id": "m1", "created_at": "..."}}
```

(Each object above is one line in a real file.) ``thread`` lines hold
`memfold.ThreadInfo.to_dict` and ``message`` lines hold `memfold.Message.to_dict`, so
ids, times, metadata, tool calls and multi-part content survive exactly. Every message line must
carry an ``id`` and a ``created_at``. A thread's ``created_at`` and ``updated_at`` are for
information only: the importing store stamps its own. Blank lines are ignored; a header with a
newer ``version`` is refused rather than half-understood.

An import reads its source twice. The first pass validates every line and checks that no message
id is already stored; only then does the second pass write, one thread at a time, restoring its
metadata and appending its messages in batches. So a malformed line or a clash raises before
anything is stored (a non-seekable source such as stdin is spooled to a temporary file first).

Examples:
    >>> import io
    >>> from memfold import Message, open_store
    >>> source = open_store("memory://")
    >>> _ = source.append("t1", Message(role="user", content="hello"))
    >>> buffer = io.StringIO()
    >>> export_threads(source, buffer)
    1
    >>> _ = buffer.seek(0)
    >>> target = open_store("memory://")
    >>> import_threads(target, buffer)
    1
    >>> target.load("t1") == source.load("t1")
    True
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO, Any, Final, Literal, TypeAlias

from memfold import __version__
from memfold.errors import Conflict, InvalidInput
from memfold.model import JSON, Message, ThreadInfo, utcnow
from memfold.stores import DEFAULT_TENANT, BaseThreadStore, check_id, encode_json

__all__ = [
    "BATCH_SIZE",
    "FORMAT_VERSION",
    "PAGE_SIZE",
    "Progress",
    "aexport_threads",
    "aimport_threads",
    "aiter_threads",
    "export_threads",
    "import_threads",
    "iter_threads",
]

FORMAT_VERSION: Final = 1
"""The export format version this memfold writes and reads."""

PAGE_SIZE: Final = 200
"""How many threads one ``list_threads`` call fetches while exporting."""

BATCH_SIZE: Final = 500
"""The most messages one ``append`` call writes while importing."""

Progress: TypeAlias = Callable[[int], None]
"""Called with how many messages were just exported or imported (to advance a progress bar)."""


def _line(obj: dict[str, JSON]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


# Export.


def _header(tenant: str) -> str:
    return _line(
        {
            "format": "memfold",
            "version": FORMAT_VERSION,
            "kind": "threads",
            "tenant": tenant,
            "exported_at": utcnow().isoformat(),
            "memfold_version": __version__,
        }
    )


def _write_thread(
    out: IO[str], info: ThreadInfo, messages: Sequence[Message], progress: Progress | None
) -> None:
    """Write one thread block; its ``message_count`` is what was read, so the block is whole."""
    out.write(_line({"type": "thread", **replace(info, message_count=len(messages)).to_dict()}))
    for m in messages:
        record: dict[str, JSON] = {
            "type": "message",
            "thread_id": info.thread_id,
            "tenant": info.tenant,
            "message": m.to_dict(),
        }
        out.write(_line(record))
        if progress is not None:
            progress(1)


def _unique_ids(thread_ids: Iterable[str]) -> list[str]:
    if isinstance(thread_ids, str):
        raise InvalidInput("thread_ids must be a list of thread ids, not one str")
    return list(dict.fromkeys(check_id(t, "thread id") for t in thread_ids))


def _fresh(page: list[ThreadInfo], seen: set[str]) -> list[ThreadInfo]:
    """The threads of ``page`` not yet listed (a concurrent write can shift later pages)."""
    out = [info for info in page if info.thread_id not in seen]
    seen.update(info.thread_id for info in out)
    return out


def iter_threads(
    store: BaseThreadStore, *, tenant: str = DEFAULT_TENANT, page_size: int = PAGE_SIZE
) -> Iterator[ThreadInfo]:
    """Every thread of ``tenant``, most recently updated first, fetched a page at a time.

    Each thread is listed once even if a concurrent write reorders the pages; a thread created
    meanwhile may be missed.
    """
    seen: set[str] = set()
    offset = 0
    while True:
        page = store.list_threads(tenant=tenant, limit=page_size, offset=offset)
        yield from _fresh(page, seen)
        if len(page) < page_size:
            return
        offset += len(page)


async def aiter_threads(
    store: BaseThreadStore, *, tenant: str = DEFAULT_TENANT, page_size: int = PAGE_SIZE
) -> AsyncIterator[ThreadInfo]:
    """Async `iter_threads`."""
    seen: set[str] = set()
    offset = 0
    while True:
        page = await store.alist_threads(tenant=tenant, limit=page_size, offset=offset)
        for info in _fresh(page, seen):
            yield info
        if len(page) < page_size:
            return
        offset += len(page)


def export_threads(
    store: BaseThreadStore,
    out: IO[str],
    *,
    tenant: str = DEFAULT_TENANT,
    thread_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the threads of ``tenant`` (or only ``thread_ids``) to ``out``; returns how many.

    Threads are read one at a time, so memory holds one thread, never the whole store.

    Raises:
        NotFound: a thread of ``thread_ids`` does not exist (checked before anything is written).
    """
    check_id(tenant, "tenant")
    if thread_ids is None:
        threads: Iterable[ThreadInfo] = iter_threads(store, tenant=tenant)
    else:
        threads = [store.get_thread(t, tenant=tenant) for t in _unique_ids(thread_ids)]
    out.write(_header(tenant))
    written = 0
    for info in threads:
        _write_thread(out, info, store.load(info.thread_id, tenant=tenant), progress)
        written += 1
    return written


async def aexport_threads(
    store: BaseThreadStore,
    out: IO[str],
    *,
    tenant: str = DEFAULT_TENANT,
    thread_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> int:
    """Async `export_threads` (writes to ``out`` are ordinary file writes)."""
    check_id(tenant, "tenant")
    chosen: list[ThreadInfo] | None = None
    if thread_ids is not None:
        chosen = [await store.aget_thread(t, tenant=tenant) for t in _unique_ids(thread_ids)]
    out.write(_header(tenant))
    threads = aiter_threads(store, tenant=tenant) if chosen is None else _aiter(chosen)
    written = 0
    async for info in threads:
        _write_thread(out, info, await store.aload(info.thread_id, tenant=tenant), progress)
        written += 1
    return written


async def _aiter(items: Iterable[ThreadInfo]) -> AsyncIterator[ThreadInfo]:
    for item in items:
        yield item


# Import: a pure parser turns lines into events; one flow, driven sync or async, acts on them.


def _bad(number: int, problem: str) -> InvalidInput:
    return InvalidInput(f"line {number}: {problem}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True, slots=True)
class _ThreadStart:
    line: int
    tenant: str
    thread_id: str
    metadata: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class _Batch:
    line: int
    tenant: str
    thread_id: str
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class _ThreadEnd:
    line: int
    tenant: str
    thread_id: str
    ids: frozenset[str]


_Event: TypeAlias = _ThreadStart | _Batch | _ThreadEnd


@dataclass(slots=True)
class _Open:
    """The thread block being read."""

    line: int
    source_tenant: str
    tenant: str
    thread_id: str
    declared: int
    ids: set[str] = field(default_factory=set)
    pending: list[Message] = field(default_factory=list)
    pending_line: int = 0


def _numbered(source: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The non-blank lines of ``source`` as JSON objects, with their 1-based line numbers."""
    number = 0
    lines = iter(source)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise _bad(number + 1, f"not UTF-8 text ({exc.reason})") from exc
        number += 1
        if not raw.strip():
            continue
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise _bad(number, f"not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise _bad(number, f"expected a JSON object, got {type(data).__name__}")
        yield number, data


def _check_header(number: int, data: dict[str, Any]) -> None:
    if data.get("format") != "memfold":
        raise _bad(number, 'expected the header {"format": "memfold", ...}: not a memfold export')
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad(number, f"the header's version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise _bad(
            number,
            f"this file uses export format version {version}, but this memfold reads version "
            f"{FORMAT_VERSION}: upgrade memfold to import it",
        )
    if version < 1:
        raise _bad(number, f"unknown export format version {version}")
    if data.get("kind") != "threads":
        raise _bad(number, f"this export holds {data.get('kind')!r}, not 'threads'")


def _utf8_json(value: object, number: int, what: str) -> None:
    """Check that ``value`` is storable: JSON-serialisable and valid Unicode."""
    try:
        encode_json(value, what).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _bad(number, f"{what} is not valid Unicode text ({exc.reason})") from exc
    except InvalidInput as exc:
        raise _bad(number, str(exc)) from exc


def _open_thread(
    number: int, data: dict[str, Any], tenant: str | None, seen: set[tuple[str, str]]
) -> _Open:
    try:
        info = ThreadInfo.from_dict(data)
        source_tenant = check_id(info.tenant, "tenant")
        thread_id = check_id(info.thread_id, "thread id")
        count = info.message_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"message_count must be an int >= 0, got {count!r}")
        if not isinstance(info.metadata, dict):
            raise InvalidInput("thread metadata must be a JSON object")
    except (KeyError, TypeError, ValueError) as exc:
        problem = str(exc) if isinstance(exc, InvalidInput) else f"not a thread line ({exc!r})"
        raise _bad(number, problem) from exc
    _utf8_json(info.metadata, number, "thread metadata")
    key = (tenant or source_tenant, thread_id)
    if key in seen:
        raise _bad(number, f"thread {thread_id!r} of tenant {key[0]!r} appears twice in the file")
    seen.add(key)
    return _Open(number, source_tenant, key[0], thread_id, count)


def _message(number: int, data: dict[str, Any], thread: _Open) -> Message:
    if data.get("thread_id") != thread.thread_id or data.get("tenant") != thread.source_tenant:
        raise _bad(
            number,
            f"message of thread {data.get('thread_id')!r} (tenant {data.get('tenant')!r}) "
            f"inside the block of thread {thread.thread_id!r} (tenant {thread.source_tenant!r})",
        )
    body = data.get("message")
    if not isinstance(body, dict):
        raise _bad(number, "a message line needs a 'message' object")
    try:
        message = Message.from_dict(body)
        for key in ("id", "created_at"):
            if getattr(message, key) is None:
                raise InvalidInput(f"an exported message needs {key!r}; this one has none")
        check_id(message.id, "message id")
        _ = message.text  # every text part must be a str
        stored = message.to_dict()
    except (InvalidInput, TypeError, ValueError, AttributeError) as exc:
        problem = str(exc) if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
        raise _bad(number, f"not a valid message: {problem}") from exc
    _utf8_json(stored, number, f"message {message.id!r}")
    if message.id in thread.ids:
        raise _bad(
            number, f"message id {message.id!r} appears twice in thread {thread.thread_id!r}"
        )
    return message


def _flush(thread: _Open) -> Iterator[_Event]:
    if thread.pending:
        yield _Batch(thread.pending_line, thread.tenant, thread.thread_id, tuple(thread.pending))
        thread.pending = []


def _close(thread: _Open) -> Iterator[_Event]:
    if len(thread.ids) != thread.declared:
        raise _bad(
            thread.line,
            f"thread {thread.thread_id!r} declares {thread.declared} messages but "
            f"{len(thread.ids)} follow"
            + (" (is the file truncated?)" if len(thread.ids) < thread.declared else ""),
        )
    yield from _flush(thread)
    yield _ThreadEnd(thread.line, thread.tenant, thread.thread_id, frozenset(thread.ids))


def _events(source: IO[str], tenant: str | None) -> Iterator[_Event]:
    """Validate ``source`` line by line and describe what importing it would write."""
    lines = _numbered(source)
    first = next(lines, None)
    if first is None:
        raise _bad(1, "the input is empty: expected a memfold export header")
    _check_header(*first)
    seen: set[tuple[str, str]] = set()
    thread: _Open | None = None
    for number, data in lines:
        kind = data.get("type")
        if kind == "thread":
            if thread is not None:
                yield from _close(thread)
            thread = _open_thread(number, data, tenant, seen)
            yield _ThreadStart(number, thread.tenant, thread.thread_id, data.get("metadata", {}))
        elif kind == "message":
            if thread is None:
                raise _bad(number, "a message line before any thread line")
            message = _message(number, data, thread)
            thread.ids.add(message.id or "")
            if not thread.pending:
                thread.pending_line = number
            thread.pending.append(message)
            if len(thread.pending) >= BATCH_SIZE:
                yield from _flush(thread)
        else:
            raise _bad(number, f"unknown line type {kind!r}: expected 'thread' or 'message'")
    if thread is not None:
        yield from _close(thread)


_Method: TypeAlias = Literal["count", "load", "set_thread_metadata", "append"]


@dataclass(frozen=True, slots=True)
class _Call:
    """One public store call, named by its sync method; the async driver awaits ``a`` + name."""

    method: _Method
    args: tuple[object, ...]
    tenant: str


_Flow: TypeAlias = Generator[_Call, Any, int]


def _import_flow(source: IO[str], tenant: str | None, progress: Progress | None) -> _Flow:
    """Validate everything and check for clashes, then write; returns the threads imported."""
    start = source.tell()
    for event in _events(source, tenant):
        if isinstance(event, _ThreadEnd) and event.ids:
            held = yield _Call("count", (event.thread_id,), event.tenant)
            if held:
                stored: list[Message] = yield _Call("load", (event.thread_id,), event.tenant)
                clash = sorted(event.ids.intersection(m.id for m in stored if m.id))
                if clash:
                    raise Conflict(
                        f"line {event.line}: thread {event.thread_id!r} of tenant "
                        f"{event.tenant!r} already holds message id(s) {', '.join(clash[:3])}"
                        f"{' ...' if len(clash) > 3 else ''}: import into a fresh store or "
                        "another tenant. Nothing was imported"
                    )
    source.seek(start)
    imported = 0
    for event in _events(source, tenant):
        if isinstance(event, _ThreadStart):
            yield _Call("set_thread_metadata", (event.thread_id, event.metadata), event.tenant)
            imported += 1
        elif isinstance(event, _Batch):
            yield _Call("append", (event.thread_id, event.messages), event.tenant)
            if progress is not None:
                progress(len(event.messages))
    return imported


@contextmanager
def _rewindable(source: IO[str]) -> Iterator[IO[str]]:
    """``source`` itself if it can seek, else a temporary copy of it (for stdin and pipes)."""
    if source.seekable():
        yield source
        return
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as copy:
        try:
            shutil.copyfileobj(source, copy)
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the input is not UTF-8 text ({exc.reason})") from exc
        copy.seek(0)
        yield copy


def _import_tenant(tenant: str | None) -> str | None:
    return None if tenant is None else check_id(tenant, "tenant")


def import_threads(
    store: BaseThreadStore,
    source: IO[str],
    *,
    tenant: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Import an export into ``store``; returns how many threads were imported.

    Threads go to the tenant named in the file, or all to ``tenant`` if given. A thread that
    already exists keeps its messages and gains the imported ones; its metadata is replaced.

    Raises:
        InvalidInput: a malformed line (the message names its number); nothing was imported.
        Conflict: a message id is already stored in its thread; nothing was imported.
    """
    target = _import_tenant(tenant)
    with _rewindable(source) as rewindable:
        flow = _import_flow(rewindable, target, progress)
        try:
            call = next(flow)
            while True:
                method = getattr(store, call.method)
                call = flow.send(method(*call.args, tenant=call.tenant))
        except StopIteration as done:
            imported: int = done.value
            return imported
        finally:
            flow.close()


async def aimport_threads(
    store: BaseThreadStore,
    source: IO[str],
    *,
    tenant: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Async `import_threads` (reads from ``source`` are ordinary file reads)."""
    target = _import_tenant(tenant)
    with _rewindable(source) as rewindable:
        flow = _import_flow(rewindable, target, progress)
        try:
            call = next(flow)
            while True:
                method = getattr(store, "a" + call.method)
                call = flow.send(await method(*call.args, tenant=call.tenant))
        except StopIteration as done:
            imported: int = done.value
            return imported
        finally:
            flow.close()
