"""Tombstones: what `memfold.erase` leaves behind so that a late write cannot bring data back.

A tombstone names what was erased, never what it held:

- ``("tenant", "")``: the whole tenant. Every write to it is refused (threads, checkpoints,
  journal entries, memories).
- ``("thread", thread_id)``: one thread. Writes to its messages, metadata, checkpoints, pending
  writes and journal are refused.
- ``("user", user_id)``: the memory namespaces ``(tenant, user_id, ...)``. Writes of records
  (long-term memories and key-value entries) under that prefix are refused.

Each backend keeps its tombstones where its writes already look (a table its write triggers
read, a hash its Lua scripts read, a set beside its dicts) and refuses a write to an erased
thread or namespace with `memfold.errors.Erased`. A tombstone lives until ``expires_at`` (None:
until lifted) or until `memfold.erase.lift_erasure` removes it.

This module holds the operations every store kind runs for erasure (`FindThreads`,
`EraseSubject`, `LiftTombstones`), the counts they return, and `TombstoneSet`, the in-process
keeper the ``memory://`` backends use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Final, Literal

from memfold.errors import Erased
from memfold.model import utcnow
from memfold.ops import Op

__all__ = [
    "ERASED_MARK",
    "TENANT",
    "THREAD",
    "USER",
    "USER_KEY",
    "EraseSubject",
    "ErasureCounts",
    "FindThreads",
    "Kind",
    "LiftTombstones",
    "Tombstone",
    "TombstoneSet",
    "erased",
    "lifted",
    "namespace_erased",
    "thread_erased",
]

Kind = Literal["tenant", "thread", "user"]
TENANT: Final = "tenant"
THREAD: Final = "thread"
USER: Final = "user"

USER_KEY: Final = "user_id"
"""The thread- and checkpoint-metadata key naming the user a thread belongs to (LangGraph copies
``configurable["user_id"]`` into each checkpoint's metadata)."""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """One erased tenant, thread or user of ``tenant``.

    ``subject`` is the user id of the erasure that left it ("" for a tenant or a threads-only
    erasure), so lifting a user's erasure lifts the tombstones of their threads too.
    """

    tenant: str
    kind: Kind
    name: str
    subject: str
    erased_at: datetime
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        """Whether the tombstone still refuses writes at ``now``."""
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class ErasureCounts:
    """How much one store held (or, in a dry run, holds) of a subject, by what it was."""

    threads: int = 0
    """Message threads."""
    messages: int = 0
    """Messages of those threads (their metadata, compaction records included, went with them)."""
    checkpoint_threads: int = 0
    """Checkpoint threads (with their lease and own TTL)."""
    checkpoints: int = 0
    checkpoint_writes: int = 0
    """Pending writes."""
    checkpoint_blobs: int = 0
    """Stored channel values, delta rows included."""
    journal_entries: int = 0
    """Effect-journal entries."""
    memories: int = 0
    """Long-term memory records and key-value entries."""
    cache_entries: int = 0
    """In-process cache entries dropped (embedding caches, vector matrices, token counts)."""

    def __add__(self, other: ErasureCounts) -> ErasureCounts:
        return ErasureCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @property
    def total(self) -> int:
        """Everything counted, together."""
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class FindThreads(Op[list[str]]):
    """The ids of ``tenant``'s threads whose metadata (a thread's, or any of its checkpoints')
    has ``user_id`` equal to ``user_id``, sorted."""

    tenant: str
    user_id: str


@dataclass(frozen=True, slots=True)
class EraseSubject(Op[ErasureCounts]):
    """Place ``tombstones`` and delete, in one transaction where the backend has them, what the
    store holds of a subject: every thread of the tenant (``whole_tenant``) or those of
    ``thread_ids``; every memory under ``(tenant,)`` or ``(tenant, user_id)``. With ``dry_run``
    only counts. Returns the counts."""

    tenant: str
    user_id: str | None
    thread_ids: tuple[str, ...]
    whole_tenant: bool
    tombstones: tuple[Tombstone, ...]
    dry_run: bool
    now: datetime

    @property
    def memory_prefix(self) -> tuple[str, ...] | None:
        """The namespace prefix whose memories go: ``(tenant,)`` for the whole tenant,
        ``(tenant, user_id)`` for a user, None for a threads-only erasure."""
        if self.whole_tenant:
            return (self.tenant,)
        return None if self.user_id is None else (self.tenant, self.user_id)


@dataclass(frozen=True, slots=True)
class LiftTombstones(Op[int]):
    """Remove ``tenant``'s tombstones: those left by erasing ``user_id`` (its own and its
    threads'), those of ``thread_ids``, and with ``whole_tenant`` the tenant's own; expired
    ones go too. Returns how many live ones were removed."""

    tenant: str
    user_id: str | None
    thread_ids: tuple[str, ...]
    whole_tenant: bool
    now: datetime


def lifted(stone: Tombstone, op: LiftTombstones) -> bool:
    """Whether ``op`` lifts ``stone`` (an expired one always goes)."""
    if stone.tenant != op.tenant or not stone.live(op.now):
        return stone.tenant == op.tenant
    if stone.kind == TENANT:
        return op.whole_tenant
    if stone.kind == THREAD and stone.name in op.thread_ids:
        return True
    return op.user_id is not None and (
        stone.subject == op.user_id or (stone.kind == USER and stone.name == op.user_id)
    )


ERASED_MARK = "memfold-erased"
"""How the error of every tombstone check (an SQL trigger, a Redis script) starts, so a driver
can tell it from other errors."""


def erased(detail: str) -> Erased | None:
    """The `Erased` error for a driver's error message, if a tombstone trigger raised it."""
    if ERASED_MARK not in detail:
        return None
    what = detail.split(ERASED_MARK, 1)[1].split("\n", 1)[0].strip(" :")
    return Erased(
        f"{what or 'the thread or memory namespace'} was erased: the write is refused so the "
        "erased data stays gone; write elsewhere, or lift the erasure with "
        "memfold.lift_erasure first"
    )


def thread_erased(tenant: str, thread_id: str) -> Erased:
    """The error for a write to an erased thread."""
    return Erased(
        f"thread {thread_id!r} of tenant {tenant!r} was erased: the write is refused so the "
        "erased data stays gone; write to a new thread, or lift the erasure with "
        "memfold.lift_erasure first"
    )


def namespace_erased(namespace: tuple[str, ...]) -> Erased:
    """The error for a write to an erased memory namespace."""
    return Erased(
        f"memory namespace {namespace!r} was erased: the write is refused so the erased data "
        "stays gone; lift the erasure with memfold.lift_erasure first"
    )


class TombstoneSet:
    """Tombstones held in a dict, for the in-process backends (their owner's lock guards it)."""

    def __init__(self) -> None:
        self._stones: dict[tuple[str, str, str], Tombstone] = {}

    def __bool__(self) -> bool:
        return bool(self._stones)

    def place(self, stones: Iterable[Tombstone]) -> None:
        """Add ``stones``, replacing any with the same tenant, kind and name."""
        for stone in stones:
            self._stones[stone.tenant, stone.kind, stone.name] = stone

    def lift(self, op: LiftTombstones) -> int:
        """Remove what ``op`` lifts; returns how many live tombstones went."""
        doomed = [key for key, stone in self._stones.items() if lifted(stone, op)]
        live = sum(self._stones[key].live(op.now) for key in doomed)
        for key in doomed:
            del self._stones[key]
        return live

    def _live(self, tenant: str, kind: str, name: str) -> bool:
        stone = self._stones.get((tenant, kind, name))
        return stone is not None and stone.live(utcnow())

    def refuse_thread(self, tenant: str, thread_id: str) -> None:
        """Raise `Erased` if ``tenant`` or its thread ``thread_id`` is erased."""
        if self._stones and (
            self._live(tenant, TENANT, "") or self._live(tenant, THREAD, thread_id)
        ):
            raise thread_erased(tenant, thread_id)

    def refuse_namespace(self, namespace: tuple[str, ...]) -> None:
        """Raise `Erased` if the namespace's tenant, or its user (second label), is erased."""
        if self._stones and (
            self._live(namespace[0], TENANT, "")
            or (len(namespace) > 1 and self._live(namespace[0], USER, namespace[1]))
        ):
            raise namespace_erased(namespace)
