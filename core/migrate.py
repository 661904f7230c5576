"""Copy every thread of a tenant from one store to another, in bounded memory, safely re-runnable.

Each thread is streamed a batch at a time: the source is paged backwards once to find the page
boundaries, then read forwards page by page, and only the messages whose ids the target lacks
are appended, in order. Re-running a migration therefore moves nothing twice, and an
interrupted one resumes where it stopped. Thread metadata is copied too. A thread that fails is
reported in the result and the migration goes on with the next.

Store kinds are moved one after the other, each by its own sync and async mover (threads now:
``_migrate_threads``; checkpoints, key-value and long-term memories get movers beside it as
those stores gain backends on both sides).

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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from memfold.errors import InvalidInput, MemfoldError
from memfold.model import Message, ThreadInfo
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


@dataclass(slots=True)
class _Tally:
    threads: int = 0
    messages: int = 0
    seen: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def _check(thread_ids: Sequence[str] | None, tenant: str, batch_size: int) -> None:
    check_id(tenant, "tenant")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidInput(f"batch_size must be an int, got {batch_size!r}")
    if not 1 <= batch_size <= MAX_PAGE:
        raise InvalidInput(f"batch_size must be from 1 to {MAX_PAGE}, got {batch_size}")
    if thread_ids is not None:
        if isinstance(thread_ids, str):
            raise InvalidInput("thread_ids must be a sequence of thread ids, not one str")
        for thread_id in thread_ids:
            check_id(thread_id, "thread id")


def _page_start(page: list[Message]) -> str:
    first = page[0].id
    if first is None:  # stored messages always have ids
        raise InvalidInput("a stored message has no id")
    return first


# Threads: the sync mover.


def _threads(
    source: BaseThreadStore, thread_ids: Sequence[str] | None, tenant: str
) -> Iterator[str]:
    if thread_ids is None:
        from memfold.export import iter_threads  # export imports memfold.__version__

        yield from (info.thread_id for info in iter_threads(source, tenant=tenant))
    else:
        yield from thread_ids


def _cursors(store: BaseThreadStore, thread_id: str, tenant: str, size: int) -> list[str | None]:
    """The ``before`` cursor of each page, newest page first (only ids are kept)."""
    cursors: list[str | None] = [None]
    while True:
        page = store.load(thread_id, last=size, before=cursors[-1], tenant=tenant)
        if len(page) < size:
            return cursors if page else cursors[:-1]
        cursors.append(_page_start(page))


def _pages(
    store: BaseThreadStore, thread_id: str, tenant: str, size: int
) -> Iterator[list[Message]]:
    """A thread's messages, oldest first, a page of at most ``size`` at a time."""
    for cursor in reversed(_cursors(store, thread_id, tenant, size)):
        yield store.load(thread_id, last=size, before=cursor, tenant=tenant)


def _info(store: BaseThreadStore, thread_id: str, tenant: str) -> ThreadInfo | None:
    try:
        return store.get_thread(thread_id, tenant=tenant)
    except LookupError:
        return None


def _move_thread(
    source: BaseThreadStore,
    target: BaseThreadStore,
    thread_id: str,
    tenant: str,
    size: int,
    progress: Progress | None,
) -> tuple[bool, int]:
    info = _info(source, thread_id, tenant)
    if info is None:
        raise LookupError(f"thread {thread_id!r} is not in the source store")
    there = _info(target, thread_id, tenant)
    changed = there is None or dict(there.metadata) != dict(info.metadata)
    if changed:
        target.set_thread_metadata(thread_id, info.metadata, tenant=tenant)
    present: set[str] = set()
    if there is not None and there.message_count:
        for page in _pages(target, thread_id, tenant, size):
            present.update(m.id for m in page if m.id is not None)
    moved = 0
    for page in _pages(source, thread_id, tenant, size):
        missing = [m for m in page if m.id not in present]
        if missing:
            target.append(thread_id, missing, tenant=tenant)
            moved += len(missing)
        if progress is not None:
            progress(thread_id, len(missing))
    return changed or moved > 0, moved


def _migrate_threads(
    source: BaseThreadStore,
    target: BaseThreadStore,
    thread_ids: Sequence[str] | None,
    tenant: str,
    size: int,
    progress: Progress | None,
    tally: _Tally,
) -> None:
    for thread_id in _threads(source, thread_ids, tenant):
        tally.seen += 1
        try:
            changed, moved = _move_thread(source, target, thread_id, tenant, size, progress)
        except (MemfoldError, LookupError) as exc:
            tally.failed[thread_id] = f"{type(exc).__name__}: {exc}"
            continue
        tally.threads += changed
        tally.messages += moved


# Threads: the async mover, the same steps awaited.


async def _athreads(
    source: BaseThreadStore, thread_ids: Sequence[str] | None, tenant: str
) -> AsyncIterator[str]:
    if thread_ids is None:
        from memfold.export import aiter_threads  # export imports memfold.__version__

        async for info in aiter_threads(source, tenant=tenant):
            yield info.thread_id
    else:
        for thread_id in thread_ids:
            yield thread_id


async def _acursors(
    store: BaseThreadStore, thread_id: str, tenant: str, size: int
) -> list[str | None]:
    cursors: list[str | None] = [None]
    while True:
        page = await store.aload(thread_id, last=size, before=cursors[-1], tenant=tenant)
        if len(page) < size:
            return cursors if page else cursors[:-1]
        cursors.append(_page_start(page))


async def _apages(
    store: BaseThreadStore, thread_id: str, tenant: str, size: int
) -> AsyncIterator[list[Message]]:
    for cursor in reversed(await _acursors(store, thread_id, tenant, size)):
        yield await store.aload(thread_id, last=size, before=cursor, tenant=tenant)


async def _ainfo(store: BaseThreadStore, thread_id: str, tenant: str) -> ThreadInfo | None:
    try:
        return await store.aget_thread(thread_id, tenant=tenant)
    except LookupError:
        return None


async def _amove_thread(
    source: BaseThreadStore,
    target: BaseThreadStore,
    thread_id: str,
    tenant: str,
    size: int,
    progress: Progress | None,
) -> tuple[bool, int]:
    info = await _ainfo(source, thread_id, tenant)
    if info is None:
        raise LookupError(f"thread {thread_id!r} is not in the source store")
    there = await _ainfo(target, thread_id, tenant)
    changed = there is None or dict(there.metadata) != dict(info.metadata)
    if changed:
        await target.aset_thread_metadata(thread_id, info.metadata, tenant=tenant)
    present: set[str] = set()
    if there is not None and there.message_count:
        async for page in _apages(target, thread_id, tenant, size):
            present.update(m.id for m in page if m.id is not None)
    moved = 0
    async for page in _apages(source, thread_id, tenant, size):
        missing = [m for m in page if m.id not in present]
        if missing:
            await target.aappend(thread_id, missing, tenant=tenant)
            moved += len(missing)
        if progress is not None:
            progress(thread_id, len(missing))
    return changed or moved > 0, moved


async def _amigrate_threads(
    source: BaseThreadStore,
    target: BaseThreadStore,
    thread_ids: Sequence[str] | None,
    tenant: str,
    size: int,
    progress: Progress | None,
    tally: _Tally,
) -> None:
    async for thread_id in _athreads(source, thread_ids, tenant):
        tally.seen += 1
        try:
            changed, moved = await _amove_thread(source, target, thread_id, tenant, size, progress)
        except (MemfoldError, LookupError) as exc:
            tally.failed[thread_id] = f"{type(exc).__name__}: {exc}"
            continue
        tally.threads += changed
        tally.messages += moved


# The public entry points: every store kind, one after the other.


def migrate(
    source: BaseThreadStore,
    target: BaseThreadStore,
    *,
    thread_ids: Sequence[str] | None = None,
    tenant: str = DEFAULT_TENANT,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> MigrationResult:
    """Copy ``tenant``'s threads (all, or ``thread_ids``) from ``source`` to ``target``.

    Messages keep their ids and times; those already in the target (by id) are skipped, so a
    re-run moves nothing. At most ``batch_size`` messages of one thread are held at a time
    (plus the ids already in the target for that thread).

    Raises:
        InvalidInput: a bad tenant, thread id or batch size. A thread that fails to copy is
            listed in `MigrationResult.failed` instead.
    """
    _check(thread_ids, tenant, batch_size)
    started = time.monotonic()
    tally = _Tally()
    _migrate_threads(source, target, thread_ids, tenant, batch_size, progress, tally)
    return MigrationResult(
        tally.threads, tally.messages, tally.failed, time.monotonic() - started, tally.seen
    )


async def amigrate(
    source: BaseThreadStore,
    target: BaseThreadStore,
    *,
    thread_ids: Sequence[str] | None = None,
    tenant: str = DEFAULT_TENANT,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> MigrationResult:
    """Async `migrate`."""
    _check(thread_ids, tenant, batch_size)
    started = time.monotonic()
    tally = _Tally()
    await _amigrate_threads(source, target, thread_ids, tenant, batch_size, progress, tally)
    return MigrationResult(
        tally.threads, tally.messages, tally.failed, time.monotonic() - started, tally.seen
    )
