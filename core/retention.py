"""Retention: one policy for every store kind, the sweeps that apply it, and what they removed.

A `RetentionPolicy` says what a sweep removes, in one vocabulary for threads, checkpoints and
long-term memories:

- ``ttl_seconds``: threads (of a thread or a checkpoint store) not written for that long go
  whole. Memory records have no policy TTL: each carries its own ``ttl_seconds``.
- ``max_age_seconds``: messages, checkpoints (the newest of each namespace stays) and memory
  records older than that go.
- ``keep_last``: only the newest N messages of each thread, checkpoints of each thread
  namespace, and records of each memory namespace stay.
- ``max_threads``: only the N most recently updated threads of each tenant stay (thread
  stores).

A thread's own TTL (``set_thread_ttl``) wins over the policy's. Removal is always oldest
first, and never breaks a conversation: when a thread's oldest messages go, any tool results
left at the front of what stays go with them (their call is gone), so every remaining tool
result still follows the assistant message that called it.

Every store kind has ``sweep(policy=None, *, tenant=None, dry_run=False)`` returning a
`SweepResult`; `prune` and `aprune` sweep every kind a URL opens and return a `PruneReport`
with one `SweepResult` per kind. A dry run counts what would go and changes nothing.

Examples:
    >>> from memfold import Message, open_store
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", [Message(role="user", content=f"m{i}") for i in range(5)])
    >>> store.sweep(RetentionPolicy(keep_last=2), dry_run=True).messages
    3
    >>> store.count("t1")
    5
    >>> prune(store, RetentionPolicy(keep_last=2)).kinds["threads"].messages
    3
    >>> [m.content for m in store.load("t1")]
    ['m3', 'm4']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from memfold.errors import InvalidInput
from memfold.limits import MAX_COUNT, MAX_SECONDS

if TYPE_CHECKING:
    from datetime import datetime

    from memfold.model import Message

__all__ = [
    "KINDS",
    "KIND_COUNTS",
    "POLICY_OPTIONS",
    "Kind",
    "PruneReport",
    "RetentionPolicy",
    "SweepResult",
    "Sweepable",
    "aprune",
    "check_kinds",
    "check_policy",
    "check_seconds",
    "cut_takes",
    "policy_from_options",
    "prune",
    "tool_safe_cut",
]

Kind = Literal["threads", "checkpoints", "memories"]
KINDS: Final[tuple[Kind, ...]] = ("threads", "checkpoints", "memories")
"""The store kinds, in the order `prune` sweeps them."""

KIND_COUNTS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "threads": (("threads", "threads"), ("messages", "messages")),
    "checkpoints": (
        ("threads", "threads"),
        ("checkpoints", "checkpoints"),
        ("values", "blobs"),
        ("writes", "writes"),
    ),
    "memories": (("records", "records"),),
}
"""The counts each kind's sweep fills: ``(name in reports, SweepResult field)`` pairs
(checkpoints' ``blobs`` are their stored channel values)."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What a sweep removes (see the table in `memfold.retention`); None: no limit.

    ``keep_last`` keeps the newest N items of each container (messages of a thread,
    checkpoints of a thread namespace, records of a memory namespace); ``max_age_seconds``
    drops items older than that (the newest checkpoint of each namespace always stays);
    ``ttl_seconds`` deletes whole threads not written for that long (a thread's own TTL, set
    with ``set_thread_ttl``, wins); ``max_threads`` keeps the most recently updated N threads
    of each tenant (thread stores). `for_kind` leaves out what a kind has no use for.
    """

    keep_last: int | None = None
    max_age_seconds: float | None = None
    ttl_seconds: float | None = None
    max_threads: int | None = None

    def for_kind(self, kind: Kind) -> RetentionPolicy:
        """This policy without the fields ``kind`` has no use for: ``max_threads`` is for
        thread stores, and memories have no threads (their records carry their own TTL).

        Raises:
            InvalidInput: ``kind`` is not ``"threads"``, ``"checkpoints"`` or ``"memories"``.
        """
        if kind not in ("threads", "checkpoints", "memories"):
            raise InvalidInput(f"kind must be threads, checkpoints or memories, got {kind!r}")
        if kind == "memories":
            return replace(self, ttl_seconds=None, max_threads=None)
        if kind == "checkpoints":
            return replace(self, max_threads=None)
        return self

    @property
    def empty(self) -> bool:
        """Whether the policy removes nothing by itself (sweeps still drop expired data)."""
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep removed (in a dry run: would remove). Each kind fills its own counts:
    threads ``threads`` and ``messages``; checkpoints ``threads``, ``checkpoints``, ``blobs``
    (stored channel values) and ``writes`` (pending writes); memories ``records``."""

    threads: int = 0
    checkpoints: int = 0
    blobs: int = 0
    writes: int = 0
    messages: int = 0
    records: int = 0

    def __add__(self, other: SweepResult) -> SweepResult:
        return SweepResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        """Every item counted, whatever its kind."""
        return sum(getattr(self, f.name) for f in fields(self))

    def counts(self, kind: str) -> dict[str, int]:
        """The counts a sweep of ``kind`` fills, by their report names (`KIND_COUNTS`).

        Examples:
            >>> SweepResult(checkpoints=3, blobs=2).counts("checkpoints")
            {'threads': 0, 'checkpoints': 3, 'values': 2, 'writes': 0}
        """
        return {name: getattr(self, field) for name, field in KIND_COUNTS[kind]}


class Sweepable(Protocol):
    """What every store kind's protocol shares: a retention sweep, sync and async."""

    def sweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult: ...
    async def asweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult: ...


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What `prune` removed (or, with ``dry_run``, would remove), per store kind."""

    kinds: Mapping[str, SweepResult] = field(default_factory=dict)
    """``"threads"``, ``"checkpoints"``, ``"memories"`` → what the sweep of that kind removed;
    only the kinds swept appear."""
    dry_run: bool = False
    seconds: float = 0.0
    """How long the sweeps took, opening and closing the stores included."""
    kind_seconds: Mapping[str, float] = field(default_factory=dict)
    """How long each kind's sweep took."""

    @property
    def total(self) -> SweepResult:
        """Every kind's counts added up."""
        total = SweepResult()
        for result in self.kinds.values():
            total += result
        return total

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values: ``dry_run``, ``seconds``, and per kind swept its
        counts (`SweepResult.counts`) and ``seconds``.

        Examples:
            >>> report = PruneReport({"memories": SweepResult(records=2)}, True, 0.5,
            ...                      {"memories": 0.25})
            >>> report.to_dict()["kinds"]
            {'memories': {'records': 2, 'seconds': 0.25}}
        """
        kinds = {
            kind: {**result.counts(kind), "seconds": self.kind_seconds.get(kind, 0.0)}
            for kind, result in self.kinds.items()
            if kind in KIND_COUNTS
        }
        return {"dry_run": self.dry_run, "seconds": self.seconds, "kinds": kinds}


def check_seconds(value: object, what: str) -> float | None:
    """``value`` as a float if it is a number of seconds from 0 (excluded) to `MAX_SECONDS`,
    or None."""
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, int | float) and 0 < value <= MAX_SECONDS:
        return float(value)
    raise InvalidInput(
        f"{what} must be a number of seconds from 0 (excluded) to {MAX_SECONDS:,} "
        f"(MAX_SECONDS, 100 years) or None, got {value!r}"
    )


def _check_count(value: object, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise InvalidInput(f"{what} must be an int >= 1 or None, got {value!r} (at most 2**63 - 1)")


def check_policy(policy: object) -> RetentionPolicy:
    """Return ``policy`` if it is a usable `RetentionPolicy`, else raise `InvalidInput`."""
    if not isinstance(policy, RetentionPolicy):
        raise InvalidInput(f"expected a RetentionPolicy, got {type(policy).__name__}")
    _check_count(policy.keep_last, "keep_last")
    _check_count(policy.max_threads, "max_threads")
    check_seconds(policy.max_age_seconds, "max_age_seconds")
    check_seconds(policy.ttl_seconds, "ttl_seconds")
    return policy


POLICY_OPTIONS: Final[Mapping[str, Callable[[str], Any]]] = {
    "keep_last": int,
    "max_age_seconds": float,
    "ttl_seconds": float,
    "max_threads": int,
}
"""The URL query options that make a store's own policy (``?keep_last=100&ttl_seconds=3600``)."""


def policy_from_options(options: dict[str, Any]) -> RetentionPolicy:
    """The policy named by the `POLICY_OPTIONS` in ``options``, popped from it."""
    return check_policy(
        RetentionPolicy(**{k: options.pop(k) for k in POLICY_OPTIONS if k in options})
    )


def tool_safe_cut(cut: int, following: Iterable[Message], cutoff: datetime | None = None) -> int:
    """Where to cut the front off a thread so that no tool result loses its call.

    ``cut`` is how many of the oldest messages a rule removes; ``following`` are the messages
    from position ``cut`` on, in order (only as many as needed are read). The cut moves past
    every tool result at the front of what would stay: the call they answer is removed. With
    ``cutoff`` (a max-age sweep) it also moves past every message created before it, so what
    stays starts with the first message `cut_takes` leaves, and a second sweep cuts nothing.

    Examples:
        >>> from memfold import Message
        >>> rest = [Message(role="tool", content="4", tool_call_id="c1"),
        ...         Message(role="user", content="thanks")]
        >>> tool_safe_cut(2, rest)
        3
        >>> tool_safe_cut(0, rest)
        0
    """
    cut = max(cut, 0)
    for message in following:
        if not cut_takes(message, cut, cutoff):
            break
        cut += 1
    return cut


def cut_takes(message: Message, cut: int, cutoff: datetime | None) -> bool:
    """Whether a cut of ``cut`` messages off a thread's front takes the next one, ``message``,
    too: it was created before ``cutoff``, or it is a tool result (whose call the cut took)."""
    from memfold.compaction.units import TOOL_ROLES

    created = message.created_at
    if cutoff is not None and created is not None and created < cutoff:
        return True
    return cut > 0 and message.role in TOOL_ROLES


def _kind_of(store: object) -> Kind:
    from memfold.checkpoints import BaseCheckpointStore
    from memfold.memories import BaseMemoryStore
    from memfold.stores import BaseThreadStore

    if isinstance(store, BaseThreadStore):
        return "threads"
    if isinstance(store, BaseCheckpointStore):
        return "checkpoints"
    if isinstance(store, BaseMemoryStore):
        return "memories"
    raise InvalidInput(
        f"prune takes a store URL or a thread, checkpoint or memory store, "
        f"got {type(store).__name__}"
    )


def check_kinds(kinds: Iterable[str] | None) -> tuple[Kind, ...]:
    """The store kinds named in ``kinds`` (None: all), in `KINDS` order."""
    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        kinds = (kinds,)
    wanted = set(kinds)
    if unknown := sorted(wanted - set(KINDS)):
        raise InvalidInput(f"unknown store kind {unknown[0]!r}: use {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in wanted)


def _stores(
    target: str | Any | Sequence[Any], kinds: tuple[Kind, ...]
) -> tuple[list[tuple[Kind, Any]], list[Any]]:
    """The ``(kind, store)`` pairs to sweep, and the stores opened here (to close)."""
    if isinstance(target, str):
        from memfold.open import open_stores

        opened = open_stores(target, kinds=kinds)
        return [(_kind_of(s), s) for s in opened], opened
    given = list(target) if isinstance(target, list | tuple) else [target]
    pairs = [(_kind_of(s), s) for s in given]
    return [(k, s) for k, s in pairs if k in kinds], []


def prune(
    target: str | Any | Sequence[Any],
    policy: RetentionPolicy | None = None,
    *,
    kinds: Iterable[str] | None = None,
    tenant: str | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Sweep every store kind ``target`` opens (a URL), or the stores given, by ``policy``.

    Args:
        target: a store URL (every kind it opens is swept), a store, or a list of stores.
        policy: the rules for every kind (the fields a kind has no use for are left out for
            it, see `RetentionPolicy.for_kind`); None: each store's own policy (for a URL, its
            query options such as ``?keep_last=100``).
        kinds: only these kinds (``"threads"``, ``"checkpoints"``, ``"memories"``).
        tenant: only this tenant (for memories: namespaces starting with it); None: all.
        dry_run: count what would be removed and change nothing.

    Raises:
        InvalidInput: a bad policy, kind, tenant or URL.
    """
    wanted = check_kinds(kinds)
    if policy is not None:
        check_policy(policy)
    started = time.monotonic()
    pairs, opened = _stores(target, wanted)
    results: dict[str, SweepResult] = {}
    timings: dict[str, float] = {}
    try:
        for kind, store in pairs:
            own = None if policy is None else policy.for_kind(kind)
            began = time.monotonic()
            found = store.sweep(own, tenant=tenant, dry_run=dry_run)
            _tally(results, timings, kind, found, time.monotonic() - began)
    finally:
        for store in opened:
            store.close()
    return PruneReport(results, dry_run, time.monotonic() - started, timings)


async def aprune(
    target: str | Any | Sequence[Any],
    policy: RetentionPolicy | None = None,
    *,
    kinds: Iterable[str] | None = None,
    tenant: str | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Async `prune`: the stores are opened and swept without blocking the event loop."""
    wanted = check_kinds(kinds)
    if policy is not None:
        check_policy(policy)
    started = time.monotonic()
    if isinstance(target, str):
        from memfold.open import aopen_stores

        opened = await aopen_stores(target, kinds=wanted)
        pairs = [(_kind_of(s), s) for s in opened]
    else:
        pairs, opened = _stores(target, wanted)
    results: dict[str, SweepResult] = {}
    timings: dict[str, float] = {}
    try:
        for kind, store in pairs:
            own = None if policy is None else policy.for_kind(kind)
            began = time.monotonic()
            found = await store.asweep(own, tenant=tenant, dry_run=dry_run)
            _tally(results, timings, kind, found, time.monotonic() - began)
    finally:
        for store in opened:
            await store.aclose()
    return PruneReport(results, dry_run, time.monotonic() - started, timings)


def _tally(
    results: dict[str, SweepResult],
    timings: dict[str, float],
    kind: str,
    found: SweepResult,
    seconds: float,
) -> None:
    """Add one store's sweep to its kind's counts and time."""
    results[kind] = results.get(kind, SweepResult()) + found
    timings[kind] = timings.get(kind, 0.0) + seconds
