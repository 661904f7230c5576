"""Copy every thread of a tenant from one store to another, in bounded memory, safely re-runnable.

Each thread is streamed a batch at a time: the source is paged backwards once to find the page
boundaries, then read forwards page by page, and only the messages whose ids the target lacks
are appended, in order. Re-running a migration therefore moves nothing twice, and an
interrupted one resumes where it stopped. Thread metadata is copied too. A thread that fails is
reported in the result and the migration goes on with the next. Every record keeps its times
(the stores' ``restore`` methods write them as they were).

Store kinds are moved one after the other: threads (``_migrate_threads``), checkpoints with
their pending writes and effect journal (``_migrate_checkpoints``) and long-term memories,
namespace by namespace (``_migrate_memories``). Each mover is a `memfold.flows` flow, run by
`migrate` with sync calls and by `amigrate` with async ones. Give two stores of one kind, or
two URLs to move every kind both open.

Examples:
    >>> from memfold import Message, migrate, open_store
    >>> source, target = open_store("memory://"), open_store("memory://")
    >>> _ = source.append("t1", [Message(role="user", content="hi")])
    >>> migrate(source, target).messages_moved
    1
    >>> migrate(source, target).messages_moved
    0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from memfold.checkpoints import BaseCheckpointStore
from memfold.errors import InvalidInput, MemfoldError
from memfold.flows import Call, Flow, arun, run
from memfold.journal import EffectJournal, ListJournalThreads
from memfold.memories import BaseMemoryStore
from memfold.memory_model import MemoryRecord, Namespace
from memfold.model import ThreadInfo
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
from memfold.stores import DEFAULT_TENANT, MAX_PAGE, BaseThreadStore, check_id

__all__ = ["MigrationResult", "amigrate", "migrate"]

Progress = Callable[[str, int], None]
"""Called after each batch with the thread id and how many messages the batch moved."""


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What a migration did."""

    threads_moved: int
    """Threads created or changed in the target (not those already there in full)."""
    messages_moved: int
    """Messages appended to the target."""
    failed: dict[str, str] = field(default_factory=dict)
    """Thread id → the error that stopped its copy."""
    duration: float = 0.0
    """Seconds taken."""
    threads_seen: int = 0
    """Threads read from the source."""
    checkpoints_moved: int = 0
    """Checkpoints stored in the target (those it had already are not counted)."""
    journal_entries_moved: int = 0
    """Effect journal entries recorded in the target."""
    checkpoint_threads_seen: int = 0
    """Checkpoint threads read from the source."""
    memories_moved: int = 0
    """Long-term memory records written to the target (those it had already are not counted)."""
    memory_namespaces_seen: int = 0
    """Memory namespaces read from the source."""
    kinds_not_moved: dict[str, str] = field(default_factory=dict)
    """Store kind (``"threads"``, ``"checkpoints"``, ``"memories"``) → why none of it moved:
    given two URLs, the source holds records of that kind (of those asked for) but the target
    URL opens no store of that kind (a PostgreSQL URL without ``?dimensions=`` opens no memory
    store until one has been created there, a Chroma URL opens only memories)."""


@dataclass(slots=True)
class _Tally:
    threads: int = 0
    messages: int = 0
    seen: int = 0
    checkpoints: int = 0
    journal: int = 0
    checkpoint_threads: int = 0
    memories: int = 0
    memory_namespaces: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_moved: dict[str, str] = field(default_factory=dict)
    found: set[str] = field(default_factory=set)
    """The named threads some source store holds."""


def _check(thread_ids: Sequence[str] | None, tenant: str, batch_size: int) -> None:
    check_id(tenant, "tenant")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidInput(f"batch_size must be an int, got {batch_size!r}")
    if not 1 <= batch_size <= MAX_PAGE:
        raise InvalidInput(f"batch_size must be from 1 to {MAX_PAGE}, got {batch_size}")
    if thread_ids is not None:
        if isinstance(thread_ids, str):
            raise InvalidInput("thread_ids must be a sequence of thread ids, not one str")
        if isinstance(thread_ids, bytes) or not isinstance(thread_ids, Iterable):
            raise InvalidInput(f"thread_ids must be a sequence of thread ids, got {thread_ids!r}")
        for thread_id in thread_ids:
            check_id(thread_id, "thread id")


# Threads: each thread's source is paged backwards once (only ids kept) to find the pages,
# then read forwards page by page, and the messages whose ids the target lacks are appended.


def _info(store: BaseThreadStore, thread_id: str, tenant: str) -> Flow[ThreadInfo | None]:
    try:
        info: ThreadInfo = yield Call(store, "get_thread", (thread_id,), {"tenant": tenant})
    except LookupError:
        return None
    return info


def _same_thread(there: ThreadInfo | None, info: ThreadInfo) -> bool:
    """Whether the target's thread already has the source's metadata and times."""
    return there is not None and (
        dict(there.metadata) == dict(info.metadata)
        and there.created_at == info.created_at
        and there.updated_at == info.updated_at
    )


def _move_thread(
    source: BaseThreadStore,
    target: BaseThreadStore,
    thread_id: str,
    tenant: str,
    size: int,
    progress: Progress | None,
) -> Flow[tuple[bool, int] | None]:
    """Copy one thread; returns whether the target changed and how many messages moved, or
    None when the source has no such thread."""
    info = yield from _info(source, thread_id, tenant)
    if info is None:
        return None
    there = yield from _info(target, thread_id, tenant)
    where = {"tenant": tenant}
    ttl = yield Call(source, "get_thread_ttl", (thread_id,), where)
    there_ttl = (
        None if there is None else (yield Call(target, "get_thread_ttl", (thread_id,), where))
    )
    present: set[str] = set()
    if there is not None and there.message_count:
        yield from message_cursors(
            target, thread_id, tenant, size, lambda page: present.update(str(m.id) for m in page)
        )
    cursors, newest = yield from message_cursors(source, thread_id, tenant, size, lambda _: None)
    moved = 0
    for cursor in reversed(cursors):
        page = newest
        if cursor is not None:
            page = yield load_page(source, thread_id, tenant, size, cursor)
        missing = [m for m in page if m.id not in present]
        if missing:
            yield Call(target, "append", (thread_id, missing), {"tenant": tenant})
            moved += len(missing)
        if progress is not None:
            progress(thread_id, len(missing))
    changed = moved > 0 or not _same_thread(there, info)
    if changed:
        yield Call(target, "restore_thread", (info,))
    if ttl != there_ttl:  # counted from the restored last write, as in the source
        yield Call(target, "set_thread_ttl", (thread_id, ttl), where)
    return changed or ttl != there_ttl, moved


def _migrate_threads(
    source: BaseThreadStore,
    target: BaseThreadStore,
    thread_ids: Sequence[str] | None,
    tenant: str,
    size: int,
    progress: Progress | None,
    tally: _Tally,
) -> Flow[None]:
    def one(thread_id: str) -> Flow[None]:
        try:
            done = yield from _move_thread(source, target, thread_id, tenant, size, progress)
        except (MemfoldError, LookupError) as exc:
            tally.seen += 1
            tally.failed[thread_id] = f"{type(exc).__name__}: {exc}"
            return
        if done is None:  # named: fails if no other source store holds it (_migrate_flow)
            if thread_ids is None:  # listed, then deleted meanwhile
                tally.seen += 1
                tally.failed[thread_id] = f"NotFound: thread {thread_id!r} is not in the source"
            return
        tally.seen += 1
        tally.found.add(thread_id)
        tally.threads += done[0]
        tally.messages += done[1]

    if thread_ids is not None:
        for thread_id in thread_ids:
            yield from one(thread_id)
        return
    seen: set[str] = set()
    offset = 0
    while True:
        page = yield Call(
            source, "list_threads", (), {"tenant": tenant, "limit": PAGE_SIZE, "offset": offset}
        )
        for info in fresh(page, seen):
            yield from one(info.thread_id)
        if len(page) < PAGE_SIZE:
            return
        offset += len(page)


# Checkpoints: a thread's checkpoint keys are listed (newest first, a page at a time, only keys
# kept), those the target lacks are restored oldest first, so each parent is stored before its
# children. Pending writes go before their checkpoint: a copy interrupted between the two is
# redone whole on the next run. The effect journal and the thread's own TTL go with the thread.


def _move_journal(
    source: BaseCheckpointStore, target: BaseCheckpointStore, thread_id: str, tenant: str
) -> Flow[int]:
    if not (source.capabilities.effect_journal and target.capabilities.effect_journal):
        return 0
    key = {"tenant": tenant}
    there = yield Call(EffectJournal(target), "list_entries", (thread_id,), key)
    held = {(e.namespace, e.tool_call_id) for e in there}
    moved = 0
    for entry in (yield Call(EffectJournal(source), "list_entries", (thread_id,), key)):
        if (entry.namespace, entry.tool_call_id) not in held:
            yield Call(EffectJournal(target), "restore", (entry,), key)
            moved += 1
    return moved


def _move_checkpoints(
    source: BaseCheckpointStore,
    target: BaseCheckpointStore,
    thread_id: str,
    tenant: str,
    size: int,
    progress: Progress | None,
) -> Flow[tuple[int, int]]:
    present = set((yield from checkpoint_keys(target, thread_id, tenant, size)))
    keys = yield from checkpoint_keys(source, thread_id, tenant, size)
    missing = [key for key in keys if key not in present]
    for start in range(len(missing) - 1, -1, -size):
        batch = missing[max(0, start - size + 1) : start + 1]
        for namespace, checkpoint_id in reversed(batch):
            where = {"tenant": tenant, "namespace": namespace, "checkpoint_id": checkpoint_id}
            c = yield Call(source, "get", (thread_id,), where)
            if c is not None:  # pruned since it was listed
                yield Call(target, "restore", (c,), {"tenant": tenant})
        if progress is not None:
            progress(f"checkpoints:{thread_id}", len(batch))
    journaled = yield from _move_journal(source, target, thread_id, tenant)
    where = {"tenant": tenant}
    ttl = yield Call(source, "get_thread_ttl", (thread_id,), where)
    if ttl != (yield Call(target, "get_thread_ttl", (thread_id,), where)):
        # after the checkpoints: counted from the restored last write, as in the source
        yield Call(target, "set_thread_ttl", (thread_id, ttl), where)
    return len(missing), journaled


def _migrate_checkpoints(
    source: BaseCheckpointStore,
    target: BaseCheckpointStore,
    thread_ids: Sequence[str] | None,
    tenant: str,
    size: int,
    progress: Progress | None,
    tally: _Tally,
) -> Flow[None]:
    named = thread_ids is not None
    if thread_ids is None:
        thread_ids = yield from checkpoint_threads(source, tenant, size)
    for thread_id in thread_ids:
        if named:
            try:
                held = yield from holds_checkpoint_thread(source, thread_id, tenant)
            except MemfoldError as exc:
                tally.checkpoint_threads += 1
                tally.failed[f"checkpoints:{thread_id}"] = f"{type(exc).__name__}: {exc}"
                continue
            if not held:  # fails if no other source store holds it (_migrate_flow)
                continue
            tally.found.add(thread_id)
        tally.checkpoint_threads += 1
        try:
            moved, journaled = yield from _move_checkpoints(
                source, target, thread_id, tenant, size, progress
            )
        except MemfoldError as exc:
            tally.failed[f"checkpoints:{thread_id}"] = f"{type(exc).__name__}: {exc}"
            continue
        tally.checkpoints += moved
        tally.journal += journaled


# Memories: the tenant's namespaces are listed a page at a time; each one's live records are
# read a batch at a time (with their vectors; listing a namespace also returns those under it,
# which are left to their own turn), the ids the target lacks are restored with their times and
# their vector and its model, never embedded again, and never merged.


def _label(namespace: Namespace) -> str:
    return "memories:" + "/".join(namespace)


def _copies(
    target: BaseMemoryStore, page: list[MemoryRecord], present: set[str]
) -> list[MemoryRecord]:
    """The records of ``page`` the target lacks (vectors dropped for a target without vector
    search)."""
    keep = target.capabilities.vector_search
    return [
        r if keep else replace(r, embedding=None, embedding_model=None)
        for r in page
        if r.id not in present
    ]


def _move_memories(
    source: BaseMemoryStore,
    target: BaseMemoryStore,
    namespace: Namespace,
    size: int,
    progress: Progress | None,
) -> Flow[int]:
    moved = offset = 0
    while True:
        listed = yield Call(
            source,
            "list_records",
            (namespace,),
            {"limit": size, "offset": offset, "include_embedding": True},
        )
        page = [r for r in listed if r.namespace == namespace]
        if page:
            held = yield Call(target, "get_many", (namespace, [str(r.id) for r in page]))
            missing = _copies(target, page, {str(r.id) for r in held})
            if missing:
                yield Call(target, "restore_many", (missing,))
                moved += len(missing)
            if progress is not None:
                progress(_label(namespace), len(missing))
        if len(listed) < size:
            return moved
        offset += size


def _migrate_memories(
    source: BaseMemoryStore,
    target: BaseMemoryStore,
    thread_ids: Sequence[str] | None,
    tenant: str,
    size: int,
    progress: Progress | None,
    tally: _Tally,
) -> Flow[None]:
    if thread_ids is not None:  # only those threads were asked for
        return
    offset = 0
    while True:
        page = yield Call(
            source, "list_namespaces", ((tenant,),), {"limit": size, "offset": offset}
        )
        for namespace in page:
            tally.memory_namespaces += 1
            try:
                tally.memories += yield from _move_memories(
                    source, target, namespace, size, progress
                )
            except MemfoldError as exc:
                tally.failed[_label(namespace)] = f"{type(exc).__name__}: {exc}"
        if len(page) < size:
            return
        offset += size


# The public entry points: every store kind, one after the other.

Store = AnyStore
"""A store `migrate` moves: each kind's records go to a store of the same kind."""


def _kind(store: object, side: str) -> type[Store]:
    for kind in (BaseThreadStore, BaseCheckpointStore, BaseMemoryStore):
        if isinstance(store, kind):
            return kind
    raise InvalidInput(
        f"the migration {side} must be a store URL, a thread, checkpoint or memory store, "
        f"got {type(store).__name__}"
    )


_KIND_NAMES: dict[type[Store], str] = {
    BaseThreadStore: "threads",
    BaseCheckpointStore: "checkpoints",
    BaseMemoryStore: "memories",
}


def _pairs(
    source: str | Store, target: str | Store
) -> tuple[list[tuple[Store, Store]], list[tuple[Store, str]], list[Store]]:
    """The ``(source, target)`` store pairs to move, the source stores whose kind the target
    URL does not open (with the reason it gave), and the stores opened here (to close)."""
    if isinstance(source, str) and isinstance(target, str):
        sources = open_stores(source)
        try:
            targets = open_stores(target)
        except BaseException:
            for store in sources:
                store.close()
            raise
        pairs = [(s, t) for s in sources for t in targets if _kind(s, "") is _kind(t, "")]
        paired = {id(s) for s, _ in pairs}
        unmatched = [(s, _why_not(target, s)) for s in sources if id(s) not in paired]
        return pairs, unmatched, sources + targets
    if isinstance(source, str) or isinstance(target, str):
        raise InvalidInput("migrate takes two store URLs or two stores, not one of each")
    if _kind(source, "source") is not _kind(target, "target"):
        raise InvalidInput(
            f"cannot migrate a {type(source).__name__} into a {type(target).__name__}: "
            "give two stores of the same kind, or two URLs"
        )
    return [(source, target)], [], []


def _why_not(url: str, like: Store) -> str:
    """Why ``url`` opens no store of ``like``'s kind (the opener's error)."""
    kind = _KIND_NAMES[_kind(like, "")]
    try:
        for store in open_stores(url, kinds=[kind]):
            store.close()
    except InvalidInput as exc:
        return f"the target URL opens no {kind} store: {exc}"
    return f"the target URL opened no {kind} store"


def _holds(store: Store, thread_ids: Sequence[str] | None, tenant: str) -> Flow[bool]:
    """Whether ``store`` holds any of what a migration of ``thread_ids`` (None: all) moves."""
    if isinstance(store, BaseMemoryStore):  # memories move only when no thread is named
        return thread_ids is None and bool(
            (yield Call(store, "list_namespaces", ((tenant,),), {"limit": 1}))
        )
    if isinstance(store, BaseCheckpointStore):
        if thread_ids is not None:
            for thread_id in thread_ids:
                if (yield from holds_checkpoint_thread(store, thread_id, tenant)):
                    return True
            return False
        where = {"tenant": tenant, "limit": 1}
        if (yield Call(store, "list_checkpoints", (None,), where)):
            return True
        journal = store.capabilities.effect_journal
        return journal and bool((yield Call(store, "execute", (ListJournalThreads(tenant),))))
    assert isinstance(store, BaseThreadStore)
    if thread_ids is None:
        return bool((yield Call(store, "list_threads", (), {"tenant": tenant, "limit": 1})))
    for thread_id in thread_ids:
        if (yield from _info(store, thread_id, tenant)) is not None:
            return True
    return False


def _result(tally: _Tally, started: float) -> MigrationResult:
    return MigrationResult(
        tally.threads, tally.messages, tally.failed, time.monotonic() - started, tally.seen,
        tally.checkpoints, tally.journal, tally.checkpoint_threads, tally.memories,
        tally.memory_namespaces, tally.not_moved,
    )  # fmt: skip


def _migrate_flow(
    pairs: list[tuple[Store, Store]],
    unmatched: list[tuple[Store, str]],
    thread_ids: Sequence[str] | None,
    tenant: str,
    size: int,
    progress: Progress | None,
) -> Flow[_Tally]:
    tally = _Tally()
    for src, why in unmatched:
        if (yield from _holds(src, thread_ids, tenant)):
            tally.not_moved[_KIND_NAMES[_kind(src, "")]] = why
    searched = False
    for src, dst in pairs:
        if isinstance(src, BaseThreadStore) and isinstance(dst, BaseThreadStore):
            searched = True
            yield from _migrate_threads(src, dst, thread_ids, tenant, size, progress, tally)
        elif isinstance(src, BaseCheckpointStore) and isinstance(dst, BaseCheckpointStore):
            searched = True
            yield from _migrate_checkpoints(src, dst, thread_ids, tenant, size, progress, tally)
        elif isinstance(src, BaseMemoryStore) and isinstance(dst, BaseMemoryStore):
            yield from _migrate_memories(src, dst, thread_ids, tenant, size, progress, tally)
    for thread_id in thread_ids if searched and thread_ids is not None else ():
        if thread_id not in tally.found and thread_id not in tally.failed:
            tally.failed[thread_id] = (
                f"NotFound: thread {thread_id!r} of tenant {tenant!r} is in none of the "
                "source's thread and checkpoint stores"
            )
    return tally


def migrate(
    source: str | Store,
    target: str | Store,
    *,
    thread_ids: Sequence[str] | None = None,
    tenant: str = DEFAULT_TENANT,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> MigrationResult:
    """Copy ``tenant``'s threads (all, or ``thread_ids``) from ``source`` to ``target``.

    ``source`` and ``target`` are two stores of the same kind (thread, checkpoint or memory
    stores), or two URLs: then every kind both URLs open is moved, and the stores opened
    are closed again.

    Messages keep their ids and times, and threads their metadata, creation and update times
    and own TTL (`memfold.stores.BaseThreadStore.set_thread_ttl`, still counted from the last
    write); messages already in the target (by id) are skipped, so a re-run moves nothing. At
    most ``batch_size`` messages of one thread are held at a time (plus the ids already in the
    target for that thread). Checkpoints keep their ids, namespaces, parents, metadata,
    versions, channel values, pending writes and ``created_at``; those already in the target
    are skipped, the thread's effect journal entries the target lacks are recorded with
    their times, and its own TTL (`memfold.checkpoints.BaseCheckpointStore.set_thread_ttl`,
    still counted from the last write) is copied.

    Long-term memories (every namespace of ``tenant``; not when ``thread_ids`` is given) keep
    their ids, namespaces, text, value, importance, TTL, times and expiry, and embedding with
    its model (never embedded again); those already in the target (by id) are skipped, and no
    near-duplicate merge or ``capacity`` eviction runs.

    Given two URLs, a kind the source holds but the target URL cannot open (a fresh PostgreSQL
    URL without ``?dimensions=`` opens no memory store) is not moved, and
    `MigrationResult.kinds_not_moved` says why; a kind the source does not hold is skipped
    quietly.

    Raises:
        InvalidInput: a bad tenant, thread id, batch size or URL, or stores of two kinds. A
            thread that fails to copy is listed in `MigrationResult.failed` instead (a
            checkpoint thread as ``"checkpoints:<thread id>"``, a memory namespace as
            ``"memories:<label>/<label>..."``); so is a thread of ``thread_ids`` that none of
            the source's thread and checkpoint stores holds (one that only some hold is
            copied from those).
    """
    _check(thread_ids, tenant, batch_size)
    started = time.monotonic()
    pairs, unmatched, opened = _pairs(source, target)
    try:
        tally = run(_migrate_flow(pairs, unmatched, thread_ids, tenant, batch_size, progress))
    finally:
        for store in opened:
            store.close()
    return _result(tally, started)


async def amigrate(
    source: str | Store,
    target: str | Store,
    *,
    thread_ids: Sequence[str] | None = None,
    tenant: str = DEFAULT_TENANT,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> MigrationResult:
    """Async `migrate` (URLs are opened with the sync openers: give open stores from inside a
    running service)."""
    _check(thread_ids, tenant, batch_size)
    started = time.monotonic()
    pairs, unmatched, opened = _pairs(source, target)
    try:
        tally = await arun(
            _migrate_flow(pairs, unmatched, thread_ids, tenant, batch_size, progress)
        )
    finally:
        for store in opened:
            await store.aclose()
    return _result(tally, started)
