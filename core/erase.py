"""Erase a user or a tenant everywhere memfold keeps them, and keep the data from coming back.

`erase` deletes what the stores hold of a `Subject` and returns an `ErasureReport` with the
counts per store kind:

- **threads** (messages, metadata, and so the compaction records kept in thread metadata);
- **checkpoints** (their pending writes, value and delta rows, lease and TTL) and the
  **effect journal** kept beside them;
- **long-term memories** and **key-value entries** (both memory-store records) under the
  namespace prefix ``(tenant, user_id)``, or ``(tenant,)`` for a whole tenant;
- the **hot Redis copy** of a tiered store (erased with the durable one);
- **in-process caches**: the embedding cache of each memory store's embedder, and every
  object with a ``clear_cache()`` method you pass (an `ExactCounter`, a `CachedEmbedder`).

Which threads belong to a user: those whose thread metadata has ``"user_id": user_id``, those
with a checkpoint whose metadata has it (LangGraph copies ``config["configurable"]["user_id"]``
into every checkpoint's metadata), and the ids listed in ``Subject.thread_ids``. A thread id
found in one store is erased from every store passed, so a thread known to the thread store by
its metadata loses its checkpoints and journal too.

Before deleting, each store records tombstones (in the same transaction where it has them):
the erased threads, the user's namespace prefix, or the tenant. A late write (a run still in
flight, in this process or another) to an erased thread or namespace is then refused with
`memfold.errors.Erased` instead of bringing the data back. Tombstones keep identifiers only
(tenant, thread ids, user id), never content; they last until lifted (`lift_erasure`, for a user
who comes back) or, with ``tombstone_ttl``, for that many seconds.

Erasing twice is harmless: the second run finds nothing and counts zeros. ``dry_run=True``
counts what would go and changes nothing.

Examples:
    >>> from memfold import Message, open_store, open_memory_store
    >>> threads, memories = open_store("memory://"), open_memory_store("memory://")
    >>> _ = threads.append("t1", Message(role="user", content="hi"), tenant="acme")
    >>> _ = threads.set_thread_metadata("t1", {"user_id": "ann"}, tenant="acme")
    >>> _ = memories.put(("acme", "ann"), "likes tea")
    >>> report = erase(Subject("acme", "ann"), [threads, memories])
    >>> report.counts.threads, report.counts.messages, report.counts.memories
    (1, 1, 1)
    >>> threads.append("t1", Message(role="user", content="late"), tenant="acme")
    Traceback (most recent call last):
    ...
    memfold.errors.Erased: thread 't1' of tenant 'acme' was erased: ...
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeAlias, runtime_checkable

from memfold.checkpoints import BaseCheckpointStore
from memfold.errors import InvalidInput
from memfold.journal import EffectJournal
from memfold.memories import BaseMemoryStore
from memfold.model import utcnow
from memfold.ops import Op
from memfold.retention import check_seconds
from memfold.stores import BaseStore, BaseThreadStore, check_id
from memfold.tombstones import (
    TENANT,
    THREAD,
    USER,
    EraseSubject,
    ErasureCounts,
    FindThreads,
    LiftTombstones,
    Tombstone,
)

__all__ = [
    "ClearableCache",
    "ErasureCounts",
    "ErasureReport",
    "Subject",
    "aerase",
    "alift_erasure",
    "erase",
    "lift_erasure",
]


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom to erase: a whole tenant, one user of it, or some of its threads.

    - ``Subject("acme")``: every thread, checkpoint, journal entry and memory of tenant ``acme``.
    - ``Subject("acme", "ann")``: user ``ann``'s threads (found by metadata ``user_id``, plus
      ``thread_ids``) and the memories under ``("acme", "ann")``.
    - ``Subject("acme", thread_ids=("t1", "t2"))``: those threads only.
    """

    tenant: str
    user_id: str | None = None
    thread_ids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_id(self.tenant, "tenant")
        if self.user_id is not None:
            check_id(self.user_id, "user id")
        ids = self.thread_ids
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise InvalidInput("thread_ids must be a sequence of thread id strings")
        object.__setattr__(
            self, "thread_ids", tuple(dict.fromkeys(check_id(t, "thread id") for t in ids))
        )

    @property
    def whole_tenant(self) -> bool:
        """Whether the subject is the whole tenant (no user and no thread ids named)."""
        return self.user_id is None and not self.thread_ids


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What `erase` removed (or, in a dry run, would remove)."""

    subject: Subject
    dry_run: bool
    thread_ids: tuple[str, ...]
    """The threads erased: those named and those found by their ``user_id`` (empty for a whole
    tenant, which goes entirely)."""
    counts: ErasureCounts
    """Counts per store kind, summed over the stores passed."""
    tombstones: int
    """Tombstones placed (0 in a dry run): one per erased tenant, thread or user in each place
    that keeps tombstones, counted once where store kinds share that place (SQL stores of one
    database and schema share a table, Redis stores of one key prefix share hashes; a tiered
    store counts its durable store's). `lift_erasure` of the subject then lifts as many."""
    erased_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, e.g. for an audit log."""
        counts = {name: getattr(self.counts, name) for name in self.counts.__dataclass_fields__}
        return {
            "tenant": self.subject.tenant,
            "user_id": self.subject.user_id,
            "whole_tenant": self.subject.whole_tenant,
            "thread_ids": list(self.thread_ids),
            "dry_run": self.dry_run,
            "counts": counts,
            "tombstones": self.tombstones,
            "erased_at": self.erased_at.isoformat(),
        }


@runtime_checkable
class ClearableCache(Protocol):
    """An in-process cache that `erase` empties whole (a cache cannot tell whose entries are
    whose)."""

    @property
    def cache_size(self) -> int:
        """How many entries the cache holds."""
        ...

    def clear_cache(self) -> int:
        """Drop every entry; returns how many there were."""
        ...


_Step: TypeAlias = tuple[BaseStore, Op[Any]]


def _sorted_stores(stores: Sequence[object]) -> tuple[list[BaseStore], list[ClearableCache]]:
    """The stores (thread-keyed first, then memory stores, each once) and the caches passed."""
    if isinstance(stores, str) or not isinstance(stores, Sequence):
        raise InvalidInput("stores must be a list of memfold stores (thread, checkpoint, memory)")
    threaded: dict[int, BaseStore] = {}
    memories: dict[int, BaseMemoryStore] = {}
    caches: dict[int, ClearableCache] = {}
    for item in stores:
        store = item.store if isinstance(item, EffectJournal) else item
        if isinstance(store, BaseThreadStore | BaseCheckpointStore):
            threaded[id(store)] = store
        elif isinstance(store, BaseMemoryStore):
            memories[id(store)] = store
            if isinstance(store.embedder, ClearableCache):
                caches[id(store.embedder)] = store.embedder
        elif isinstance(store, ClearableCache):
            caches[id(store)] = store
        else:
            raise InvalidInput(
                f"erase takes thread, checkpoint and memory stores, effect journals and caches "
                f"with clear_cache(), not {type(item).__name__}"
            )
    return [*threaded.values(), *memories.values()], list(caches.values())


def _check_ttl(ttl: object) -> float | None:
    return check_seconds(ttl, "tombstone_ttl")


def _tombstones(
    subject: Subject,
    thread_ids: tuple[str, ...],
    store: BaseStore,
    now: datetime,
    ttl: float | None,
) -> tuple[Tombstone, ...]:
    """The tombstones ``store`` keeps for ``subject``: the tenant's, else the threads' (in a
    thread or checkpoint store) or the user's (in a memory store)."""
    expires = None if ttl is None else now + timedelta(seconds=ttl)
    tenant, user = subject.tenant, subject.user_id
    if subject.whole_tenant:
        return (Tombstone(tenant, TENANT, "", "", now, expires),)
    if isinstance(store, BaseMemoryStore):
        return () if user is None else (Tombstone(tenant, USER, user, user, now, expires),)
    return tuple(Tombstone(tenant, THREAD, t, user or "", now, expires) for t in thread_ids)


def _erasure(
    subject: Subject, stores: list[BaseStore], dry_run: bool, ttl: float | None, now: datetime
) -> Generator[_Step, Any, tuple[tuple[str, ...], ErasureCounts, int]]:
    """The erasure as steps (a store and the operation it runs), written once for the sync and
    async drivers; returns the threads erased, the counts and the tombstones placed."""
    found: dict[str, None] = dict.fromkeys(subject.thread_ids)
    if subject.user_id is not None:
        for store in stores:
            if not isinstance(store, BaseMemoryStore):
                ids = yield store, FindThreads(subject.tenant, subject.user_id)
                found.update(dict.fromkeys(ids))
    thread_ids = tuple(found)
    counts = ErasureCounts()
    placed: set[tuple[Hashable, str, str]] = set()
    for store in stores:
        stones = () if dry_run else _tombstones(subject, thread_ids, store, now, ttl)
        op = EraseSubject(
            subject.tenant,
            subject.user_id,
            thread_ids,
            subject.whole_tenant,
            stones,
            dry_run,
            now,
        )
        counts += yield store, op
        placed.update((store.tombstone_place, s.kind, s.name) for s in stones)
    return thread_ids, counts, len(placed)


def _check_subject(subject: object) -> Subject:
    if not isinstance(subject, Subject):
        raise InvalidInput(f"erase takes a memfold.erase.Subject, got {type(subject).__name__}")
    return subject


def _clear(caches: list[ClearableCache], dry_run: bool) -> ErasureCounts:
    if dry_run:
        return ErasureCounts(cache_entries=sum(c.cache_size for c in caches))
    return ErasureCounts(cache_entries=sum(c.clear_cache() for c in caches))


def erase(
    subject: Subject,
    stores: Sequence[object],
    *,
    dry_run: bool = False,
    tombstone_ttl: float | None = None,
) -> ErasureReport:
    """Delete everything ``stores`` hold of ``subject`` and leave tombstones against late writes.

    Args:
        subject: the tenant, user or threads to erase.
        stores: thread, checkpoint and memory stores (any backend), effect journals, and caches
            with ``clear_cache()``; a memory store's embedder cache is cleared with it.
        dry_run: only count what would be erased; nothing changes and no tombstone is placed.
        tombstone_ttl: seconds the tombstones refuse writes (None: until `lift_erasure`).

    Raises:
        InvalidInput: a bad subject, an unknown kind of store, or a bad ``tombstone_ttl``.
    """
    subject = _check_subject(subject)
    ttl = _check_ttl(tombstone_ttl)
    ordered, caches = _sorted_stores(stores)
    now = utcnow()
    steps = _erasure(subject, ordered, dry_run, ttl, now)
    try:
        store, op = next(steps)
        while True:
            store, op = steps.send(store.execute(op))
    except StopIteration as done:
        thread_ids, counts, placed = done.value
    if not dry_run:
        for store in ordered:
            store.purge_deleted()
    return ErasureReport(
        subject, dry_run, thread_ids, counts + _clear(caches, dry_run), placed, now
    )


async def aerase(
    subject: Subject,
    stores: Sequence[object],
    *,
    dry_run: bool = False,
    tombstone_ttl: float | None = None,
) -> ErasureReport:
    """Async `erase`."""
    subject = _check_subject(subject)
    ttl = _check_ttl(tombstone_ttl)
    ordered, caches = _sorted_stores(stores)
    now = utcnow()
    steps = _erasure(subject, ordered, dry_run, ttl, now)
    try:
        store, op = next(steps)
        while True:
            store, op = steps.send(await store.aexecute(op))
    except StopIteration as done:
        thread_ids, counts, placed = done.value
    if not dry_run:
        for store in ordered:
            await store.apurge_deleted()
    return ErasureReport(
        subject, dry_run, thread_ids, counts + _clear(caches, dry_run), placed, now
    )


def _lift_op(subject: Subject) -> LiftTombstones:
    return LiftTombstones(
        subject.tenant, subject.user_id, subject.thread_ids, subject.whole_tenant, utcnow()
    )


def lift_erasure(subject: Subject, stores: Sequence[object]) -> int:
    """Lift the tombstones `erase` left for ``subject``, so its threads and namespaces take
    writes again (a user who comes back). Erased data stays erased.

    ``Subject(tenant, user_id)`` lifts the user's tombstone and those of the threads erased
    with it; ``thread_ids`` lift those threads'; ``Subject(tenant)`` lifts the tenant's.
    Expired tombstones are removed too. Returns how many live tombstones were lifted.
    """
    subject = _check_subject(subject)
    ordered, _ = _sorted_stores(stores)
    op = _lift_op(subject)
    return sum(store.execute(op) for store in ordered)


async def alift_erasure(subject: Subject, stores: Sequence[object]) -> int:
    """Async `lift_erasure`."""
    subject = _check_subject(subject)
    ordered, _ = _sorted_stores(stores)
    op = _lift_op(subject)
    return sum([await store.aexecute(op) for store in ordered])
