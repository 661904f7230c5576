"""Import an export (`memfold.export_format`) into stores of any backend, times included.

`import_data` reads its source twice. The first pass checks every line (its JSON, its fields,
the file's structure and end line, and each record against the target store's own validation)
and that nothing in the file is already stored: a message id in its thread, a checkpoint id in
its thread namespace, a journal entry's call, a memory id in its namespace. Only then does the
second pass write, with the stores' ``restore`` methods, so threads, checkpoints, journal
entries and memories keep their ids and times; a malformed line or a clash raises before
anything is stored (a non-seekable source such as stdin is spooled to a temporary file first).

Threads new to the target get the file's metadata, times and own TTL (which counts from the
thread's last write, as in the source: its clock does not restart); a thread that already
exists keeps its messages, gains the imported ones and takes the file's metadata and TTL (a
file older than version 3, which records no TTLs, leaves its TTL as it is). Checkpoint threads
likewise get, or take, the file's own TTL once their checkpoints and journal entries are
restored (at their times, so the clock does not restart either), when the import takes some
of their lines; a file older than version 4 records none and leaves a checkpoint thread's TTL
as it is. Memories with
vectors go to a target without vector search without them. The algorithm is one
`memfold.flows` flow, run by `import_data` with sync calls and by `aimport_data` with async
ones.

Examples:
    >>> import io
    >>> from memfold.importer import import_data
    >>> from memfold.memories import open_memory_store
    >>> lines = [
    ...     '{"format": "memfold", "version": 4, "kinds": ["memories"], "tenant": "acme"}',
    ...     '{"type": "memory", "namespace": ["acme", "ann"], "id": "m1", "text": "likes tea",'
    ...     ' "value": {}, "embedding": null, "embedding_model": null, "importance": 0.5,'
    ...     ' "ttl_seconds": null, "created_at": "2026-01-01T00:00:00+00:00",'
    ...     ' "updated_at": "2026-01-01T00:00:00+00:00",'
    ...     ' "last_used_at": "2026-01-01T00:00:00+00:00", "expires_at": null}',
    ...     '{"type": "end", "counts": {"threads": 0, "messages": 0, "checkpoints": 0,'
    ...     ' "journal_entries": 0, "memories": 1}}',
    ... ]
    >>> store = open_memory_store("memory://")
    >>> import_data(store, io.StringIO("\\n".join(lines))).memories
    1
    >>> store.get(("acme", "ann"), "m1").created_at.year
    2026
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Collection, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any, Final, TypeAlias

from memfold.checkpoint_model import Checkpoint
from memfold.errors import Conflict, InvalidInput, NotFound
from memfold.export import Progress, StoreSet
from memfold.export_format import (
    CHECKPOINT_TTL_VERSION,
    THREAD_TTL_FIELD,
    TTL_VERSION,
    Counts,
    Header,
    Selection,
    bad,
    check_kinds,
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
)
from memfold.flows import Call, Flow, arun, run
from memfold.journal import EffectJournal, JournalEntry
from memfold.memory_model import MemoryRecord, Namespace
from memfold.model import Message, ThreadInfo
from memfold.open import AnyStore
from memfold.paging import checkpoint_keys
from memfold.stores import check_id

__all__ = ["BATCH_SIZE", "aimport_data", "import_data"]

BATCH_SIZE: Final = 500
"""The most messages one append, or memories one restore, writes while importing."""

_LINE_KINDS: Final = {
    "thread": "threads",
    "message": "threads",
    "checkpoint": "checkpoints",
    "journal": "checkpoints",
    "memory": "memories",
}
_COUNTED: Final = {
    "thread": "threads",
    "message": "messages",
    "checkpoint": "checkpoints",
    "journal": "journal_entries",
    "memory": "memories",
}


# Events: what the file holds, checked line by line, in file order.


@dataclass(frozen=True, slots=True)
class _Messages:
    line: int
    tenant: str
    thread_id: str
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class _ThreadEnd:
    line: int
    tenant: str
    info: ThreadInfo
    ids: frozenset[str]
    selected: bool
    ttl: float | None
    """The thread's own TTL."""
    carries_ttl: bool
    """Whether the file records threads' own TTLs (older versions do not)."""


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    line: int
    tenant: str
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class _Entry:
    line: int
    tenant: str
    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class _BlockEnd:
    """The end of one checkpoint thread's lines."""

    line: int
    tenant: str
    thread_id: str
    checkpoints: frozenset[tuple[str, str]]
    calls: frozenset[tuple[str, str]]
    owned: bool
    ttl: float | None
    """The checkpoint thread's own TTL."""
    takes_ttl: bool
    """Whether the target's thread takes ``ttl``: the file records checkpoint threads' own
    TTLs (older versions do not) and the import selects some of the thread's lines."""


@dataclass(frozen=True, slots=True)
class _Memories:
    lines: tuple[int, ...]
    namespace: Namespace
    records: tuple[MemoryRecord, ...]


_Event: TypeAlias = _Messages | _ThreadEnd | _Checkpoint | _Entry | _BlockEnd | _Memories


@dataclass(slots=True)
class _Thread:
    """The thread block being read."""

    line: int
    source_tenant: str
    tenant: str
    info: ThreadInfo
    selected: bool
    ttl: float | None
    ids: set[str] = field(default_factory=set)
    kept: list[Message] = field(default_factory=list)
    kept_ids: set[str] = field(default_factory=set)
    kept_line: int = 0


@dataclass(slots=True)
class _Block:
    """The checkpoint thread (checkpoint and journal lines) being read."""

    line: int
    tenant: str
    thread_id: str
    ttl: float | None
    checkpoints: set[tuple[str, str]] = field(default_factory=set)
    calls: set[tuple[str, str]] = field(default_factory=set)
    owned: bool = False
    selected: bool = False
    """Whether the import selects some of its lines."""


@dataclass(slots=True)
class _Space:
    """The memory namespace being read."""

    namespace: Namespace
    ids: set[str] = field(default_factory=set)
    lines: list[int] = field(default_factory=list)
    kept: list[MemoryRecord] = field(default_factory=list)


def _once(seen: set[tuple[str, str]], key: tuple[str, str], number: int, what: str) -> None:
    """Add ``(namespace, id)`` to the keys of its block, or refuse a second one."""
    if key in seen:
        raise bad(number, f"{what} {key[1]!r} (namespace {key[0]!r}) appears twice")
    seen.add(key)


@dataclass(slots=True)
class _Reader:
    """Turns checked lines into events; remembers only the open block and the keys of the
    blocks already closed (so none may reopen)."""

    header: Header
    tenant: str | None
    selection: Selection
    kinds: tuple[str, ...]
    owned: frozenset[tuple[str, str]] | None
    thread: _Thread | None = None
    block: _Block | None = None
    space: _Space | None = None
    threads_seen: set[tuple[str, str]] = field(default_factory=set)
    blocks_seen: set[tuple[str, str]] = field(default_factory=set)
    spaces_seen: set[Namespace] = field(default_factory=set)
    tally: dict[str, int] = field(default_factory=dict)

    def target(self, source_tenant: str) -> str:
        return self.tenant or source_tenant

    def check_tenant(self, number: int, tenant: object) -> str:
        found = check_id(tenant, "tenant")
        if self.header.tenant is not None and found != self.header.tenant:
            raise bad(number, f"tenant {found!r}, but the header says {self.header.tenant!r}")
        return found

    # Threads.

    def open_thread(self, number: int, data: Mapping[str, Any]) -> Iterator[_Event]:
        yield from self.close_all()
        info = read_thread(number, data)
        ttl = read_thread_ttl(number, data) if self.header.version >= TTL_VERSION else None
        self.check_tenant(number, info.tenant)
        key = (self.target(info.tenant), info.thread_id)
        if key in self.threads_seen:
            raise bad(
                number, f"thread {info.thread_id!r} of tenant {key[0]!r} appears twice in the file"
            )
        self.threads_seen.add(key)
        selected = "threads" in self.kinds and self.selection.owns(info.metadata)
        self.thread = _Thread(number, info.tenant, key[0], info, selected, ttl)

    def message(self, number: int, data: Mapping[str, Any]) -> Iterator[_Event]:
        thread = self.thread
        if thread is None:
            raise bad(number, "a message line before any thread line")
        if data.get("thread_id") != thread.info.thread_id or data.get("tenant") != (
            thread.source_tenant
        ):
            raise bad(
                number,
                f"message of thread {data.get('thread_id')!r} (tenant {data.get('tenant')!r}) "
                f"inside the block of thread {thread.info.thread_id!r} (tenant "
                f"{thread.source_tenant!r})",
            )
        message = read_message(number, data)
        message_id = message.id or ""
        if message_id in thread.ids:
            raise bad(
                number,
                f"message id {message_id!r} appears twice in thread {thread.info.thread_id!r}",
            )
        thread.ids.add(message_id)
        if thread.selected and self.selection.covers(message.created_at):
            if not thread.kept:
                thread.kept_line = number
            thread.kept.append(message)
            thread.kept_ids.add(message_id)
            if len(thread.kept) >= BATCH_SIZE:
                yield from self.flush()

    def flush(self) -> Iterator[_Event]:
        thread = self.thread
        if thread is not None and thread.kept:
            yield _Messages(
                thread.kept_line, thread.tenant, thread.info.thread_id, tuple(thread.kept)
            )
            thread.kept = []

    def close_thread(self) -> Iterator[_Event]:
        thread = self.thread
        if thread is None:
            return
        declared = thread.info.message_count
        if len(thread.ids) != declared:
            raise bad(
                thread.line,
                f"thread {thread.info.thread_id!r} declares {declared} messages but "
                f"{len(thread.ids)} follow"
                + (" (is the file truncated?)" if len(thread.ids) < declared else ""),
            )
        yield from self.flush()
        selected = thread.selected and (
            bool(thread.kept_ids) or self.selection.covers(thread.info.updated_at)
        )
        info = replace(thread.info, tenant=thread.tenant)
        carries = self.header.version >= TTL_VERSION
        kept = frozenset(thread.kept_ids)
        yield _ThreadEnd(thread.line, thread.tenant, info, kept, selected, thread.ttl, carries)
        self.thread = None

    # Checkpoint threads.

    def enter_block(
        self, number: int, tenant: str, thread_id: str, data: Mapping[str, Any]
    ) -> Generator[_Event, None, _Block]:
        """The checkpoint thread a line belongs to: the open one, or a new one (whose first
        line carries the thread's own TTL)."""
        key = (self.target(tenant), thread_id)
        if self.block is not None and (self.block.tenant, self.block.thread_id) == key:
            return self.block
        carries = self.header.version >= CHECKPOINT_TTL_VERSION
        ttl = read_checkpoint_thread_ttl(number, data) if carries else None
        yield from self.close_all()
        if key in self.blocks_seen:
            raise bad(
                number,
                f"checkpoint thread {thread_id!r} of tenant {key[0]!r} appears in two places: "
                "a thread's checkpoint and journal lines must be together",
            )
        self.blocks_seen.add(key)
        self.block = _Block(number, key[0], thread_id, ttl)
        return self.block

    def no_ttl_inside(self, number: int, data: Mapping[str, Any], block: _Block) -> None:
        """Refuse a checkpoint thread's TTL on a line other than its first."""
        if (
            number != block.line
            and THREAD_TTL_FIELD in data
            and self.header.version >= CHECKPOINT_TTL_VERSION
        ):
            raise bad(
                number,
                f"{THREAD_TTL_FIELD} on a line that does not open checkpoint thread "
                f"{block.thread_id!r} (line {block.line} does): only a checkpoint thread's "
                "first line carries its TTL",
            )

    def wanted(self, block: _Block) -> bool:
        """Whether a checkpoint thread's records are imported (in the second pass, when the
        first found which threads the selected user owns)."""
        if "checkpoints" not in self.kinds:
            return False
        return self.owned is None or (block.tenant, block.thread_id) in self.owned

    def checkpoint(self, number: int, data: Mapping[str, Any]) -> Iterator[_Event]:
        tenant, checkpoint = read_checkpoint(number, data)
        tenant = self.check_tenant(number, tenant)
        block = yield from self.enter_block(number, tenant, checkpoint.thread_id, data)
        key = (checkpoint.namespace, checkpoint.checkpoint_id)
        _once(block.checkpoints, key, number, "checkpoint")
        self.no_ttl_inside(number, data, block)
        block.owned = block.owned or self.selection.owns(checkpoint.metadata)
        if self.wanted(block) and self.selection.covers(checkpoint.created_at):
            block.selected = True
            yield _Checkpoint(number, block.tenant, checkpoint)

    def journal(self, number: int, data: Mapping[str, Any]) -> Iterator[_Event]:
        tenant, entry = read_journal(number, data)
        tenant = self.check_tenant(number, tenant)
        block = yield from self.enter_block(number, tenant, entry.thread_id, data)
        _once(block.calls, (entry.namespace, entry.tool_call_id), number, "journal entry")
        self.no_ttl_inside(number, data, block)
        if self.wanted(block) and self.selection.covers(entry.recorded_at):
            block.selected = True
            yield _Entry(number, block.tenant, entry)

    def close_block(self) -> Iterator[_Event]:
        block = self.block
        if block is not None:
            owned = "checkpoints" in self.kinds and (self.selection.user is None or block.owned)
            keys = frozenset(block.checkpoints), frozenset(block.calls)
            takes = block.selected and self.header.version >= CHECKPOINT_TTL_VERSION
            yield _BlockEnd(
                block.line, block.tenant, block.thread_id, *keys, owned, block.ttl, takes
            )
            self.block = None

    # Memory namespaces.

    def memory(self, number: int, data: Mapping[str, Any]) -> Iterator[_Event]:
        record = read_memory(number, data)
        if not record.namespace:
            raise bad(number, "namespace must hold at least the tenant label")
        self.check_tenant(number, record.namespace[0])
        if self.tenant is not None:
            record = replace(record, namespace=(self.tenant, *record.namespace[1:]))
        space = self.space
        if space is None or space.namespace != record.namespace:
            yield from self.close_all()
            if record.namespace in self.spaces_seen:
                raise bad(
                    number,
                    f"namespace {list(record.namespace)!r} appears in two places: a "
                    "namespace's memory lines must be together",
                )
            self.spaces_seen.add(record.namespace)
            space = self.space = _Space(record.namespace)
        if record.id in space.ids:
            raise bad(number, f"memory id {record.id!r} appears twice in its namespace")
        space.ids.add(str(record.id))
        if (
            "memories" in self.kinds
            and self.selection.owns_namespace(record.namespace)
            and self.selection.covers(record.updated_at)
        ):
            space.kept.append(record)
            space.lines.append(number)
            if len(space.kept) >= BATCH_SIZE:
                yield from self.flush_space()

    def flush_space(self) -> Iterator[_Event]:
        space = self.space
        if space is not None and space.kept:
            yield _Memories(tuple(space.lines), space.namespace, tuple(space.kept))
            space.kept, space.lines = [], []

    def close_all(self) -> Iterator[_Event]:
        yield from self.close_thread()
        yield from self.close_block()
        yield from self.flush_space()
        self.space = None

    # The whole file.

    def line(self, number: int, data: Mapping[str, Any]) -> Iterator[_Event]:
        kind = data.get("type")
        known = ("thread", "message") if self.header.version == 1 else (*_LINE_KINDS, "end")
        if kind not in known or kind == "end":
            shown = ", ".join(repr(k) for k in known)
            raise bad(number, f"unknown line type {kind!r}: expected one of {shown}")
        if _LINE_KINDS[kind] not in self.header.kinds:
            raise bad(number, f"a {kind} line, but the header lists only {self.header.kinds}")
        if kind != "message" and self.thread is not None:
            yield from self.close_thread()
        self.tally[_COUNTED[kind]] = self.tally.get(_COUNTED[kind], 0) + 1
        match kind:
            case "thread":
                yield from self.open_thread(number, data)
            case "message":
                yield from self.message(number, data)
            case "checkpoint":
                yield from self.checkpoint(number, data)
            case "journal":
                yield from self.journal(number, data)
            case _:
                yield from self.memory(number, data)


def _events(
    source: IO[str],
    tenant: str | None,
    selection: Selection,
    kinds: Collection[str] | None,
    owned: frozenset[tuple[str, str]] | None,
) -> Iterator[_Event | Header]:
    """Check ``source`` line by line: first its `Header`, then what importing it would write."""
    lines = read_lines(source)
    first = next(lines, None)
    if first is None:
        raise bad(1, "the input is empty: expected a memfold export header")
    header = read_header(*first)
    yield header
    chosen = header.kinds if kinds is None else tuple(k for k in header.kinds if k in kinds)
    reader = _Reader(header, tenant, selection, chosen, owned)
    ended: int | None = None
    last = first[0]
    for number, data in lines:
        last = number
        if ended is not None:
            raise bad(number, f"a line after the end line (line {ended})")
        if data.get("type") == "end" and header.version > 1:
            yield from reader.close_all()
            counts = read_end(number, data)
            if counts != Counts.of(reader.tally):
                raise bad(
                    number,
                    f"the end line counts {counts}, but the file holds {Counts.of(reader.tally)}",
                )
            ended = number
            continue
        yield from reader.line(number, data)
    yield from reader.close_all()
    if header.version > 1 and ended is None:
        raise bad(last, "the file ends without its end line (is it truncated?)")


# The import flow: the first pass checks, the second writes.


def _clash(line: int, what: str, where: str, keys: Collection[str]) -> Conflict:
    shown = ", ".join(sorted(keys)[:3]) + (" ..." if len(keys) > 3 else "")
    return Conflict(
        f"line {line}: {where} already holds {what} {shown}: import into a fresh store or "
        "another tenant. Nothing was imported"
    )


@contextmanager
def _checked(line: int) -> Iterator[None]:
    """A store's own validation error, named by the line it came from."""
    try:
        yield
    except InvalidInput as exc:
        raise type(exc)(f"line {line}: {exc}") from exc  # a LimitExceeded stays one


def _without_vectors(records: Sequence[MemoryRecord]) -> tuple[MemoryRecord, ...]:
    return tuple(replace(r, embedding=None, embedding_model=None) for r in records)


@dataclass(slots=True)
class _Plan:
    """What the first pass learned for the second."""

    existing_threads: dict[tuple[str, str], ThreadInfo] = field(default_factory=dict)
    """Threads already in the target, as they were found there."""
    owned: set[tuple[str, str]] = field(default_factory=set)
    checkpoint_ttls: dict[tuple[str, str], float | None] = field(default_factory=dict)
    """The own TTLs of the checkpoint threads of the file, as they were found in the target."""


def _check_thread(stores: StoreSet, event: _ThreadEnd, plan: _Plan) -> Flow[None]:
    store = stores.threads
    if store is None or not event.selected:
        return
    with _checked(event.line):
        store._restore_op(event.info)  # the store's own checks (the op is not run)
    if event.ttl is not None:
        store.capabilities.require("ttl", store.name)
    try:
        held = yield Call(store, "get_thread", (event.info.thread_id,), {"tenant": event.tenant})
    except NotFound:
        return
    plan.existing_threads[event.tenant, event.info.thread_id] = held
    if held.message_count and event.ids:
        stored = yield Call(store, "load", (event.info.thread_id,), {"tenant": event.tenant})
        clash = event.ids.intersection(m.id for m in stored if m.id)
        if clash:
            where = f"thread {event.info.thread_id!r} of tenant {event.tenant!r}"
            raise _clash(event.line, "message id(s)", where, clash)


def _check_block(stores: StoreSet, event: _BlockEnd, plan: _Plan) -> Flow[None]:
    store = stores.checkpoints
    if store is None or not event.owned:
        return
    plan.owned.add((event.tenant, event.thread_id))
    if event.takes_ttl:
        if event.ttl is not None:
            store.capabilities.require("ttl", store.name)
        plan.checkpoint_ttls[event.tenant, event.thread_id] = yield Call(
            store, "get_thread_ttl", (event.thread_id,), {"tenant": event.tenant}
        )
    where = f"checkpoint thread {event.thread_id!r} of tenant {event.tenant!r}"
    if event.checkpoints:
        some = yield Call(
            store, "list_checkpoints", (event.thread_id,), {"tenant": event.tenant, "limit": 1}
        )
        if some:
            stored = yield from checkpoint_keys(store, event.thread_id, event.tenant, BATCH_SIZE)
            clash = event.checkpoints.intersection(stored)
            if clash:
                raise _clash(event.line, "checkpoint(s)", where, {c for _, c in clash})
    if event.calls:
        entries = yield Call(
            EffectJournal(store), "list_entries", (event.thread_id,), {"tenant": event.tenant}
        )
        clash = event.calls.intersection((e.namespace, e.tool_call_id) for e in entries)
        if clash:
            raise _clash(event.line, "journal entries for call(s)", where, {c for _, c in clash})


def _check_memories(stores: StoreSet, event: _Memories) -> Flow[None]:
    store = stores.memories
    if store is None:
        return
    records = event.records
    if not store.capabilities.vector_search:
        records = _without_vectors(records)
    try:
        store._restore_op(records)  # the store's own checks (the op is not run)
    except InvalidInput:
        for line, record in zip(event.lines, records, strict=True):  # which line is it?
            with _checked(line):
                store._restore_op([record])
        raise
    held = yield Call(store, "get_many", (event.namespace, [str(r.id) for r in records]))
    if held:
        where = f"namespace {list(event.namespace)!r}"
        raise _clash(event.lines[0], "memory id(s)", where, {str(r.id) for r in held})


def _check(stores: StoreSet, event: _Event, plan: _Plan) -> Flow[None]:
    """The first pass on one event: the store's own validation, then clashes."""
    if isinstance(event, _Messages) and stores.threads is not None:
        with _checked(event.line):  # the store's own checks and limits (the op is not run)
            stores.threads._append_op(event.thread_id, event.messages, event.tenant)
    elif isinstance(event, _ThreadEnd):
        yield from _check_thread(stores, event, plan)
    elif isinstance(event, _BlockEnd):
        yield from _check_block(stores, event, plan)
    elif isinstance(event, _Memories):
        yield from _check_memories(stores, event)
    elif isinstance(event, _Checkpoint) and stores.checkpoints is not None:
        with _checked(event.line):
            stores.checkpoints._restore_ops(event.checkpoint, event.tenant)
    elif isinstance(event, _Entry) and stores.checkpoints is not None:
        with _checked(event.line):
            EffectJournal(stores.checkpoints)._restore_op(event.entry, event.tenant)


def _write(
    stores: StoreSet, event: _Event, plan: _Plan, tally: dict[str, int], progress: Progress | None
) -> Flow[None]:
    """The second pass on one event: write it."""
    kind, n = "", 0
    if isinstance(event, _Messages) and stores.threads is not None:
        yield Call(
            stores.threads, "append", (event.thread_id, event.messages), {"tenant": event.tenant}
        )
        kind, n = "messages", len(event.messages)
    elif isinstance(event, _ThreadEnd) and stores.threads is not None and event.selected:
        info, held = event.info, plan.existing_threads.get((event.tenant, event.info.thread_id))
        if held is not None:  # an incremental import: the thread spans both times
            info = replace(
                info,
                created_at=min(held.created_at, info.created_at),
                updated_at=max(held.updated_at, info.updated_at),
            )
        yield Call(stores.threads, "restore_thread", (info,))
        if event.ttl is not None or (held is not None and event.carries_ttl):
            where = {"tenant": event.tenant}  # a thread that was there takes the file's TTL
            yield Call(stores.threads, "set_thread_ttl", (info.thread_id, event.ttl), where)
        kind, n = "threads", 1
    elif isinstance(event, _Checkpoint) and stores.checkpoints is not None:
        yield Call(stores.checkpoints, "restore", (event.checkpoint,), {"tenant": event.tenant})
        kind, n = "checkpoints", 1
    elif isinstance(event, _Entry) and stores.checkpoints is not None:
        journal = EffectJournal(stores.checkpoints)
        yield Call(journal, "restore", (event.entry,), {"tenant": event.tenant})
        kind, n = "journal_entries", 1
    elif isinstance(event, _BlockEnd) and stores.checkpoints is not None and event.owned:
        there = plan.checkpoint_ttls.get((event.tenant, event.thread_id))
        if event.takes_ttl and event.ttl != there:  # after its checkpoints, at their times
            where = {"tenant": event.tenant}  # a thread that was there takes the file's TTL
            yield Call(stores.checkpoints, "set_thread_ttl", (event.thread_id, event.ttl), where)
    elif isinstance(event, _Memories) and stores.memories is not None:
        records = event.records
        if not stores.memories.capabilities.vector_search:
            records = _without_vectors(records)
        yield Call(stores.memories, "restore_many", (records,))
        kind, n = "memories", len(records)
    if n:
        tally[kind] = tally.get(kind, 0) + n
        if progress is not None:
            progress(kind, n)


def _header_kinds(header: Header, stores: StoreSet, kinds: Collection[str] | None) -> None:
    """Refuse a file holding a kind that is to be imported but has no store."""
    for kind in header.kinds:
        if (kinds is None or kind in kinds) and getattr(stores, kind) is None:
            raise InvalidInput(
                f"line 1: this file holds {kind}, but no {kind} store was given (or opened by "
                f"the URL): give one, or import other kinds with kinds=..."
            )


def _import_flow(
    stores: StoreSet,
    source: IO[str],
    tenant: str | None,
    selection: Selection,
    kinds: Collection[str] | None,
    progress: Progress | None,
) -> Flow[Counts]:
    start = source.tell()
    plan = _Plan()
    for event in _events(source, tenant, selection, kinds, None):
        if isinstance(event, Header):
            _header_kinds(event, stores, kinds)
        else:
            yield from _check(stores, event, plan)
    source.seek(start)
    owned = frozenset(plan.owned) if selection.user is not None else None
    tally: dict[str, int] = {}
    for event in _events(source, tenant, selection, kinds, owned):
        if not isinstance(event, Header):
            yield from _write(stores, event, plan, tally, progress)
    return Counts.of(tally)


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


def _arguments(
    kinds: str | Collection[str] | None, tenant: str | None, user: str | None,
    since: datetime | None, until: datetime | None,
) -> tuple[tuple[str, ...] | None, str | None, Selection]:  # fmt: skip
    chosen = None if kinds is None else check_kinds(kinds)
    target = None if tenant is None else check_id(tenant, "tenant")
    return chosen, target, Selection(user, since, until)


def import_data(
    stores: str | AnyStore | Sequence[AnyStore],
    source: IO[str],
    *,
    kinds: str | Collection[str] | None = None,
    tenant: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> Counts:
    """Import an export into ``stores``; returns how many records of each kind were written.

    ``stores`` is a URL (every store kind it opens, closed again), one store, or stores of
    different kinds; every kind the file holds needs a store unless ``kinds`` (some of
    ``threads``, ``checkpoints``, ``memories``) leaves it out. Records go to the tenant the
    file names, or all to ``tenant`` if given. ``user``, ``since`` and ``until`` import only
    part of the file (see `memfold.export_format.Selection`).

    Raises:
        InvalidInput: a malformed line (the message names its number), a bad argument, or a
            kind with no store; nothing was imported.
        Conflict: a record of the file is already stored; nothing was imported.
    """
    chosen, target, selection = _arguments(kinds, tenant, user, since, until)
    found = StoreSet.of(stores)
    try:
        with _rewindable(source) as rewindable:
            return run(_import_flow(found, rewindable, target, selection, chosen, progress))
    finally:
        found.close()


async def aimport_data(
    stores: str | AnyStore | Sequence[AnyStore],
    source: IO[str],
    *,
    kinds: str | Collection[str] | None = None,
    tenant: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> Counts:
    """Async `import_data` (a URL is opened with the sync openers; reads from ``source`` are
    ordinary file reads)."""
    chosen, target, selection = _arguments(kinds, tenant, user, since, until)
    found = StoreSet.of(stores)
    try:
        with _rewindable(source) as rewindable:
            return await arun(_import_flow(found, rewindable, target, selection, chosen, progress))
    finally:
        await found.aclose()
