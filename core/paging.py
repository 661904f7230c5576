"""Reading a store a page at a time, as `memfold.flows` sub-flows (``yield from`` them): what
`memfold.export`, `memfold.importer` and `memfold.migrate` share.

Examples:
    >>> from memfold import Message, open_store
    >>> from memfold.flows import run
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", [Message(role="user", content=str(i)) for i in range(5)])
    >>> cursors, newest = run(message_cursors(store, "t1", "default", 2, lambda page: None))
    >>> len(cursors), [m.content for m in newest]
    (3, ['3', '4'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from memfold.checkpoints import BaseCheckpointStore, Checkpoint
from memfold.errors import InvalidInput
from memfold.flows import Call, Flow
from memfold.model import Message, ThreadInfo
from memfold.stores import BaseThreadStore

__all__ = [
    "PAGE_SIZE",
    "checkpoint_keys",
    "checkpoint_threads",
    "fresh",
    "holds_checkpoint_thread",
    "load_page",
    "message_cursors",
]

PAGE_SIZE: Final = 200
"""How many threads, messages, checkpoints, namespaces or memories one read fetches, unless a
caller chooses (as `memfold.migrate` does with its ``batch_size``)."""


def fresh(page: list[ThreadInfo], seen: set[str]) -> list[ThreadInfo]:
    """The threads of ``page`` not yet listed (a concurrent write can shift later pages)."""
    out = [info for info in page if info.thread_id not in seen]
    seen.update(info.thread_id for info in out)
    return out


def load_page(
    store: BaseThreadStore, thread_id: str, tenant: str, size: int, before: str | None
) -> Call:
    """The call that reads the ``size`` messages of a thread before ``before`` (the newest
    ``size`` when None)."""
    return Call(store, "load", (thread_id,), {"tenant": tenant, "last": size, "before": before})


def message_cursors(
    store: BaseThreadStore,
    thread_id: str,
    tenant: str,
    size: int,
    visit: Callable[[list[Message]], None],
) -> Flow[tuple[list[str | None], list[Message]]]:
    """Page a thread backwards, calling ``visit`` on each page; returns the ``before`` cursor
    of each page, newest page first, and the newest page itself (so a one-page thread is read
    once). Only ids are kept, so memory holds one page."""
    cursors: list[str | None] = [None]
    newest: list[Message] | None = None
    while True:
        page: list[Message] = yield load_page(store, thread_id, tenant, size, cursors[-1])
        newest = page if newest is None else newest
        visit(page)
        if len(page) < size:
            if not page and len(cursors) > 1:
                cursors.pop()
            return cursors, newest
        if page[0].id is None:  # stored messages always have ids
            raise InvalidInput("a stored message has no id")
        cursors.append(page[0].id)


def _each_checkpoint(
    store: BaseCheckpointStore,
    thread_id: str | None,
    tenant: str,
    size: int,
    visit: Callable[[Checkpoint], None],
) -> Flow[None]:
    """Call ``visit`` on every checkpoint (of one thread, or of the tenant), newest first by
    id, read ``size`` at a time; the checkpoints sharing the id at a page boundary (other
    threads or namespaces) are fetched whole so none is skipped."""
    before: str | None = None
    where = {"tenant": tenant, "limit": size}
    while True:
        page = yield Call(store, "list_checkpoints", (thread_id,), {**where, "before": before})
        if len(page) < size:
            for c in page:
                visit(c)
            return
        before = page[-1].checkpoint_id
        tied = yield Call(
            store, "list_checkpoints", (thread_id,), {"tenant": tenant, "checkpoint_id": before}
        )
        for c in [c for c in page if c.checkpoint_id != before] + tied:
            visit(c)


def checkpoint_keys(
    store: BaseCheckpointStore, thread_id: str, tenant: str, size: int
) -> Flow[list[tuple[str, str]]]:
    """The ``(namespace, checkpoint id)`` of every checkpoint of a thread, newest first."""
    keys: list[tuple[str, str]] = []
    yield from _each_checkpoint(
        store, thread_id, tenant, size, lambda c: keys.append((c.namespace, c.checkpoint_id))
    )
    return keys


def checkpoint_threads(store: BaseCheckpointStore, tenant: str, size: int) -> Flow[list[str]]:
    """The tenant's checkpoint threads, the most recent checkpoint's first (only their ids are
    kept), then the threads that have an effect journal and no checkpoint."""
    from memfold.journal import ListJournalThreads

    threads: dict[str, None] = {}
    yield from _each_checkpoint(
        store, None, tenant, size, lambda c: threads.setdefault(c.thread_id)
    )
    if store.capabilities.effect_journal:
        journaled = yield Call(store, "execute", (ListJournalThreads(tenant),))
        threads.update(dict.fromkeys(journaled))
    return list(threads)


def holds_checkpoint_thread(store: BaseCheckpointStore, thread_id: str, tenant: str) -> Flow[bool]:
    """Whether ``store`` holds a checkpoint or an effect journal entry of the thread."""
    from memfold.journal import EffectJournal

    where = {"tenant": tenant, "limit": 1}
    if (yield Call(store, "list_checkpoints", (thread_id,), where)):
        return True
    if not store.capabilities.effect_journal:
        return False
    entries = yield Call(EffectJournal(store), "list_entries", (thread_id,), {"tenant": tenant})
    return bool(entries)
