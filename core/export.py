"""Export stores to a versioned JSON-lines file: threads, checkpoints and long-term memories.

`export_data` writes one tenant's records of every store kind it is given (or that a URL
opens) in the format of `memfold.export_format`, narrowed by user and time if asked, and
`memfold.importer.import_data` reads them back into stores of any backend, times included.

The export streams: threads, checkpoint threads and memory namespaces are listed a page at a
time, and a thread's messages are read a page at a time (twice: backwards to count and find
the pages, then forwards to write), so memory holds a page, a checkpoint, and the ids of one
thread's checkpoints, never the whole store. The algorithm is one `memfold.flows` flow, run
by `export_data` with sync calls and by `aexport_data` with async ones.

Examples:
    >>> import io
    >>> from memfold import Message, open_store
    >>> from memfold.importer import import_data
    >>> source = open_store("memory://")
    >>> _ = source.append("t1", Message(role="user", content="hello"))
    >>> buffer = io.StringIO()
    >>> export_data(source, buffer).messages
    1
    >>> _ = buffer.seek(0)
    >>> target = open_store("memory://")
    >>> import_data(target, buffer).threads
    1
    >>> target.get_thread("t1") == source.get_thread("t1")
    True
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TypeAlias

from memfold import __version__
from memfold.checkpoints import BaseCheckpointStore
from memfold.errors import InvalidInput, NotFound
from memfold.export_format import (
    KINDS,
    Counts,
    Selection,
    check_kinds,
    checkpoint_line,
    dumps,
    end_line,
    header_line,
    journal_line,
    memory_line,
    message_line,
    thread_line,
    with_thread_ttl,
)
from memfold.flows import Call, Flow, arun, run
from memfold.journal import EffectJournal
from memfold.memories import BaseMemoryStore
from memfold.memory_model import Namespace
from memfold.model import JSON, Message, ThreadInfo, utcnow
from memfold.open import AnyStore, open_stores
from memfold.paging import (
    PAGE_SIZE,
    checkpoint_keys,
    checkpoint_threads,
    fresh,
    holds_checkpoint_thread,
    load_page,
    message_cursors,
)
from memfold.stores import DEFAULT_TENANT, BaseThreadStore, check_id

__all__ = [
    "Progress",
    "StoreSet",
    "aexport_data",
    "aiter_threads",
    "export_data",
    "iter_threads",
]

Progress: TypeAlias = Callable[[str, int], None]
"""Called with a `memfold.export_format.Counts` field name (``"messages"``, ``"checkpoints"``,
...) and how many such records were just exported or imported."""


# Listing a tenant's threads (also used by the CLI and `memfold.migrate`).


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
        yield from fresh(page, seen)
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
        for info in fresh(page, seen):
            yield info
        if len(page) < page_size:
            return
        offset += len(page)


# Which stores to use.


@dataclass(slots=True)
class StoreSet:
    """The store of each kind an export or import uses, and those it opened (to close)."""

    threads: BaseThreadStore | None = None
    checkpoints: BaseCheckpointStore | None = None
    memories: BaseMemoryStore | None = None
    opened: list[AnyStore] = field(default_factory=list)

    @classmethod
    def of(cls, stores: str | AnyStore | Sequence[AnyStore]) -> StoreSet:
        """The stores given: a URL (every kind it opens is opened here), one store, or a
        sequence of stores of different kinds."""
        if isinstance(stores, str):
            opened = open_stores(stores)
            found = cls.of(opened)
            found.opened = opened
            return found
        found = cls()
        for store in [stores] if not isinstance(stores, Sequence) else list(stores):
            kind = _kind(store)
            if getattr(found, kind) is not None:
                raise InvalidInput(f"two {kind} stores given: give at most one of each kind")
            setattr(found, kind, store)
        return found

    def kinds(self) -> tuple[str, ...]:
        """The kinds there is a store for, in file order."""
        return tuple(k for k in KINDS if getattr(self, k) is not None)

    def choose(self, kinds: str | Collection[str] | None) -> tuple[str, ...]:
        """``kinds`` checked against the stores (None: every kind there is a store for)."""
        if kinds is None:
            return self.kinds()
        chosen = check_kinds(kinds)
        for kind in chosen:
            if getattr(self, kind) is None:
                raise InvalidInput(f"no {kind} store given (or opened by the URL) to use")
        return chosen

    def tenant(self, tenant: str | None) -> str:
        """The tenant every store acts for (refused when a store requires one and none is
        named)."""
        stores = [s for s in (self.threads, self.checkpoints, self.memories) if s is not None]
        resolved = {s.resolve_tenant(tenant) for s in stores}
        return resolved.pop() if resolved else check_id(tenant or DEFAULT_TENANT, "tenant")

    def close(self) -> None:
        """Close the stores opened here."""
        for store in self.opened:
            store.close()

    async def aclose(self) -> None:
        """Async `close`."""
        for store in self.opened:
            await store.aclose()


def _kind(store: object) -> str:
    for kind, base in zip(
        KINDS, (BaseThreadStore, BaseCheckpointStore, BaseMemoryStore), strict=True
    ):
        if isinstance(store, base):
            return kind
    raise InvalidInput(
        f"expected a store URL or thread, checkpoint or memory stores, got {type(store).__name__}"
    )


# The export flow: yields store calls (see memfold.flows), writes lines to ``out``.


@dataclass(slots=True)
class _Writer:
    """Where lines go, what has been written, and who hears of it."""

    out: IO[str]
    tenant: str
    selection: Selection
    progress: Progress | None
    tally: dict[str, int] = field(default_factory=dict)

    def write(self, line: Mapping[str, JSON], kind: str) -> None:
        self.out.write(dumps(line))
        self.tally[kind] = self.tally.get(kind, 0) + 1
        if self.progress is not None:
            self.progress(kind, 1)


def _export_thread(store: BaseThreadStore, info: ThreadInfo, w: _Writer) -> Flow[None]:
    """One thread's line and its selected messages: the pages are found (and the messages
    counted) newest first, then written oldest first; a thread of one page is read once."""
    count = 0

    def counted(page: list[Message]) -> None:
        nonlocal count
        count += sum(w.selection.covers(m.created_at) for m in page)

    cursors, newest = yield from message_cursors(
        store, info.thread_id, w.tenant, PAGE_SIZE, counted
    )
    if not count and not w.selection.covers(info.updated_at):
        return
    ttl = yield Call(store, "get_thread_ttl", (info.thread_id,), {"tenant": w.tenant})
    w.write(thread_line(info, count, ttl), "threads")
    for cursor in reversed(cursors):
        page = newest
        if cursor is not None:
            page = yield load_page(store, info.thread_id, w.tenant, PAGE_SIZE, cursor)
        for m in page:
            if w.selection.covers(m.created_at):
                w.write(message_line(w.tenant, info.thread_id, m), "messages")


def _export_threads(
    store: BaseThreadStore, infos: list[ThreadInfo] | None, w: _Writer
) -> Flow[None]:
    if infos is not None:
        for info in infos:
            if w.selection.owns(info.metadata):
                yield from _export_thread(store, info, w)
        return
    seen: set[str] = set()
    offset = 0
    while True:
        page: list[ThreadInfo] = yield Call(
            store, "list_threads", (), {"tenant": w.tenant, "limit": PAGE_SIZE, "offset": offset}
        )
        for info in fresh(page, seen):
            if w.selection.owns(info.metadata):
                yield from _export_thread(store, info, w)
        if len(page) < PAGE_SIZE:
            return
        offset += len(page)


def _export_checkpoints(
    store: BaseCheckpointStore, thread_ids: list[str] | None, w: _Writer
) -> Flow[None]:
    """Each checkpoint thread's checkpoints, oldest first, then its journal entries; the
    thread's first line written carries its own TTL."""
    if thread_ids is None:
        thread_ids = yield from checkpoint_threads(store, w.tenant, PAGE_SIZE)
    journal = EffectJournal(store) if store.capabilities.effect_journal else None
    key = {"tenant": w.tenant}
    for thread_id in thread_ids:
        if w.selection.user is not None:
            owned = {"filter": {"user_id": w.selection.user}, "limit": 1}
            mine = yield Call(store, "list_checkpoints", (thread_id,), {**key, **owned})
            if not mine:
                continue
        ttl = yield Call(store, "get_thread_ttl", (thread_id,), key)
        first = True
        keys = yield from checkpoint_keys(store, thread_id, w.tenant, PAGE_SIZE)
        for namespace, checkpoint_id in reversed(keys):
            where = {**key, "namespace": namespace, "checkpoint_id": checkpoint_id}
            c = yield Call(store, "get", (thread_id,), where)
            if c is not None and w.selection.covers(c.created_at):  # None: pruned meanwhile
                line = checkpoint_line(w.tenant, c)
                w.write(with_thread_ttl(line, ttl) if first else line, "checkpoints")
                first = False
        if journal is not None:
            entries = yield Call(journal, "list_entries", (thread_id,), key)
            for entry in entries:
                if w.selection.covers(entry.recorded_at):
                    line = journal_line(w.tenant, entry)
                    w.write(with_thread_ttl(line, ttl) if first else line, "journal_entries")
                    first = False


def _export_namespace(store: BaseMemoryStore, namespace: Namespace, w: _Writer) -> Flow[None]:
    offset = 0
    while True:
        listed = yield Call(
            store,
            "list_records",
            (namespace,),
            {"limit": PAGE_SIZE, "offset": offset, "include_embedding": True},
        )
        for record in listed:
            # listing a namespace also returns those under it, which get their own turn
            if record.namespace == namespace and w.selection.covers(record.updated_at):
                w.write(memory_line(record), "memories")
        if len(listed) < PAGE_SIZE:
            return
        offset += PAGE_SIZE


def _export_memories(store: BaseMemoryStore, w: _Writer) -> Flow[None]:
    user = w.selection.user
    prefix = (w.tenant,) if user is None else (w.tenant, user)
    offset = 0
    while True:
        page = yield Call(
            store, "list_namespaces", (prefix,), {"limit": PAGE_SIZE, "offset": offset}
        )
        for namespace in page:
            yield from _export_namespace(store, namespace, w)
        if len(page) < PAGE_SIZE:
            return
        offset += PAGE_SIZE


def _named_threads(
    stores: StoreSet, kinds: tuple[str, ...], thread_ids: list[str], tenant: str
) -> Flow[list[ThreadInfo] | None]:
    """The named threads the thread store holds (None: threads are not exported); a name
    that only the checkpoint store holds is exported from there alone.

    Raises:
        NotFound: a name is in none of the stores of ``kinds``.
    """
    threads = stores.threads if "threads" in kinds else None
    checkpoints = stores.checkpoints if "checkpoints" in kinds else None
    infos: list[ThreadInfo] = []
    for thread_id in thread_ids:
        if threads is not None:
            try:
                infos.append((yield Call(threads, "get_thread", (thread_id,), {"tenant": tenant})))
                continue
            except NotFound:
                if checkpoints is None:
                    raise
        if checkpoints is not None and (
            yield from holds_checkpoint_thread(checkpoints, thread_id, tenant)
        ):
            continue
        if threads is not None or checkpoints is not None:
            exported = " or ".join(k for k in kinds if k != "memories")
            raise NotFound(f"no thread {thread_id!r} of tenant {tenant!r} in the {exported}")
    return None if threads is None else infos


def _export_flow(
    stores: StoreSet,
    kinds: tuple[str, ...],
    thread_ids: list[str] | None,
    w: _Writer,
) -> Flow[Counts]:
    infos: list[ThreadInfo] | None = None
    if thread_ids is not None:  # every named thread is checked before anything is written
        infos = yield from _named_threads(stores, kinds, thread_ids, w.tenant)
    w.out.write(dumps(header_line(kinds, w.tenant, w.selection, utcnow(), __version__)))
    if stores.threads is not None and "threads" in kinds:
        yield from _export_threads(stores.threads, infos, w)
    if stores.checkpoints is not None and "checkpoints" in kinds:
        yield from _export_checkpoints(stores.checkpoints, thread_ids, w)
    if stores.memories is not None and "memories" in kinds:
        yield from _export_memories(stores.memories, w)
    counts = Counts.of(w.tally)
    w.out.write(dumps(end_line(counts)))
    return counts


def _thread_ids(thread_ids: Sequence[str] | None) -> list[str] | None:
    if thread_ids is None:
        return None
    if isinstance(thread_ids, str):
        raise InvalidInput("thread_ids must be a list of thread ids, not one str")
    if isinstance(thread_ids, bytes) or not isinstance(thread_ids, Iterable):
        raise InvalidInput(f"thread_ids must be a list of thread ids, got {thread_ids!r}")
    return list(dict.fromkeys(check_id(t, "thread id") for t in thread_ids))


def _prepare(
    stores: StoreSet,
    out: IO[str],
    kinds: str | Collection[str] | None,
    tenant: str | None,
    selection: Selection,
    thread_ids: Sequence[str] | None,
    progress: Progress | None,
) -> Flow[Counts]:
    named = _thread_ids(thread_ids)
    if kinds is None and named is not None:
        kinds = [k for k in stores.kinds() if k != "memories"]
    chosen = stores.choose(kinds)
    writer = _Writer(out, stores.tenant(tenant), selection, progress)
    return _export_flow(stores, chosen, named, writer)


def export_data(
    stores: str | AnyStore | Sequence[AnyStore],
    out: IO[str],
    *,
    kinds: str | Collection[str] | None = None,
    tenant: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thread_ids: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Counts:
    """Write ``tenant``'s records (the default tenant's when None) to ``out``; returns how
    many of each kind were written.

    ``stores`` is a URL (every store kind it opens is exported, and closed again), one store,
    or stores of different kinds; ``kinds`` picks some of ``threads``, ``checkpoints`` and
    ``memories`` (a list, or a comma-separated str). ``user``, ``since`` and ``until`` narrow
    what is written (see `memfold.export_format.Selection`); ``thread_ids`` limits threads and
    checkpoint threads to those (memories are then left out unless ``kinds`` names them).

    Raises:
        InvalidInput: a bad argument, or a kind with no store (before anything is written).
        NotFound: a thread of ``thread_ids`` is in none of the thread and checkpoint stores
            exported (before anything is written); one in only some is exported from those.
    """
    selection = Selection(user, since, until)
    found = StoreSet.of(stores)
    try:
        return run(_prepare(found, out, kinds, tenant, selection, thread_ids, progress))
    finally:
        found.close()


async def aexport_data(
    stores: str | AnyStore | Sequence[AnyStore],
    out: IO[str],
    *,
    kinds: str | Collection[str] | None = None,
    tenant: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thread_ids: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Counts:
    """Async `export_data` (a URL is opened with the sync openers; writes to ``out`` are
    ordinary file writes)."""
    selection = Selection(user, since, until)
    found = StoreSet.of(stores)
    try:
        return await arun(_prepare(found, out, kinds, tenant, selection, thread_ids, progress))
    finally:
        await found.aclose()
