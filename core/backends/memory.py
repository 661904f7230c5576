"""The in-process backend (``memory://``): the default, fast, gone when the process exits.

Bounded on request, on every write: ``max_threads`` and ``max_messages_per_thread`` evict oldest
first (a tenant's least recently updated thread, a thread's earliest messages, never leaving a
tool result without its call), and ``ttl_seconds`` expires threads that have not been written
for that long (unless they have a TTL of their own). The same bounds are the store's retention
policy, which `sweep` applies too, with ``max_age_seconds`` and each thread's own TTL.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from dataclasses import replace as with_fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from memfold import ops
from memfold.errors import Conflict, InvalidInput, NotFound
from memfold.fulltext import tokenize
from memfold.model import JSON, Message, MessageHit, ThreadInfo, utcnow
from memfold.retention import RetentionPolicy, SweepResult, check_policy, tool_safe_cut
from memfold.stores import BaseThreadStore, Capabilities, not_following
from memfold.tombstones import (
    USER_KEY,
    EraseSubject,
    ErasureCounts,
    FindThreads,
    LiftTombstones,
    TombstoneSet,
)

__all__ = ["MemoryThreadStore"]

T = TypeVar("T")


@dataclass(slots=True)
class _Thread:
    created_at: datetime
    updated_at: datetime
    messages: list[Message] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    trimmed: int = 0
    metadata: dict[str, JSON] = field(default_factory=dict)
    ttl: float | None = None

    def info(self, tenant: str, thread_id: str) -> ThreadInfo:
        return ThreadInfo(
            thread_id, tenant, self.created_at, self.updated_at, len(self.messages),
            dict(self.metadata),
        )  # fmt: skip


class MemoryThreadStore(BaseThreadStore):
    """Threads held in a dict, guarded by a lock so background threads can share it.

    Args:
        retention: what `sweep` removes by default; its ``max_threads``, ``keep_last`` and
            ``ttl_seconds`` also apply on every write. The other arguments set its fields.
        max_threads: keep at most this many threads per tenant; the least recently updated go
            first.
        max_messages_per_thread: keep at most this many messages per thread, dropping the
            oldest (the policy's ``keep_last``).
        ttl_seconds: forget a thread this long after its last write.
        keep_last: the same as ``max_messages_per_thread``.
        max_age_seconds: let `sweep` remove messages older than this.
    """

    name = "memory"

    def __init__(
        self,
        *,
        retention: RetentionPolicy | None = None,
        max_threads: int | None = None,
        max_messages_per_thread: int | None = None,
        ttl_seconds: float | None = None,
        keep_last: int | None = None,
        max_age_seconds: float | None = None,
    ) -> None:
        bounds: dict[str, Any] = {
            "max_threads": max_threads,
            "keep_last": keep_last if max_messages_per_thread is None else max_messages_per_thread,
            "ttl_seconds": ttl_seconds,
            "max_age_seconds": max_age_seconds,
        }
        policy = check_policy(
            with_fields(
                RetentionPolicy() if retention is None else check_policy(retention),
                **{k: v for k, v in bounds.items() if v is not None},
            )
        )
        super().__init__(
            Capabilities(transactions=True, full_text_search=True, ttl=True), retention=policy
        )
        self.max_threads = policy.max_threads
        self.max_messages_per_thread = policy.keep_last
        self.ttl = None if policy.ttl_seconds is None else timedelta(seconds=policy.ttl_seconds)
        # Ordered least recently updated first, so eviction pops from the front.
        self._threads: OrderedDict[tuple[str, str], _Thread] = OrderedDict()
        self._tombstones = TombstoneSet()
        # Each tenant's thread ids, in the same order, for max_threads.
        self._tenants: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()

    def execute(self, op: ops.Op[T]) -> T:
        """Run one operation under the store's lock."""
        with self._lock:
            self._expire()
            result: Any = self._run(op)
        return result  # type: ignore[no-any-return]

    async def aexecute(self, op: ops.Op[T]) -> T:
        """Run one operation; nothing here waits on I/O, so it never blocks the loop for long."""
        return self.execute(op)

    def _expire(self) -> None:
        """Forget the threads past the store's TTL (those with a TTL of their own are left to
        `sweep`)."""
        if self.ttl is None:
            return
        cutoff = utcnow() - self.ttl
        doomed = []
        for key, thread in self._threads.items():
            if thread.updated_at >= cutoff:
                break
            if thread.ttl is None:
                doomed.append(key)
        for key in doomed:
            self._forget(key)

    def _forget(self, key: tuple[str, str]) -> _Thread | None:
        thread = self._threads.pop(key, None)
        if thread is not None:
            order = self._tenants[key[0]]
            del order[key[1]]
            if not order:
                del self._tenants[key[0]]
        return thread

    def _touch(self, key: tuple[str, str]) -> _Thread:
        now = utcnow()
        thread = self._threads.get(key)
        order = self._tenants.setdefault(key[0], OrderedDict())
        if thread is None:
            thread = self._threads[key] = _Thread(now, now)
            order[key[1]] = None
            if self.max_threads is not None and len(order) > self.max_threads:
                self._forget((key[0], next(iter(order))))
        else:
            thread.updated_at = now
            self._threads.move_to_end(key)
            order.move_to_end(key[1])
        return thread

    def _settle(self, key: tuple[str, str]) -> None:
        """Move ``key`` (last, just touched) to its place in update order, as its restored
        update time may be older than others': first when oldest, as an import in export
        order makes it, else after the last thread not updated later."""
        when = self._threads[key].updated_at
        first = next(iter(self._threads.values()))
        if when <= first.updated_at:
            self._threads.move_to_end(key, last=False)
        else:
            later = [k for k, t in self._threads.items() if t.updated_at > when and k != key]
            for k in later:
                self._threads.move_to_end(k)
        self._tenants[key[0]] = OrderedDict((k[1], None) for k in self._threads if k[0] == key[0])

    def _run(self, op: ops.Op[Any]) -> Any:
        if isinstance(op, _REFUSED_WHEN_ERASED):
            self._tombstones.refuse_thread(op.tenant, op.thread_id)
        match op:
            case ops.AppendMessages(tenant, thread_id, messages, _bodies, follows):
                if follows is not None:
                    found = self._threads.get((tenant, thread_id))
                    last = found.messages[-1].id if found and found.messages else ""
                    if last != follows:
                        raise not_following(thread_id, follows, last)
                return self._append((tenant, thread_id), messages)
            case ops.ReplaceThread(tenant, thread_id, messages):
                emptied = self._touch((tenant, thread_id))
                emptied.messages, emptied.positions, emptied.trimmed = [], {}, 0
                return self._append((tenant, thread_id), messages)
            case ops.UpdateMessages(tenant, thread_id, messages, _, keep_times):
                return self._update((tenant, thread_id), messages, keep_times)
            case ops.ScrubSearchIndex():
                return None  # no index kept apart
            case ops.DeleteMessages(tenant, thread_id, message_ids):
                return self._delete_messages((tenant, thread_id), set(message_ids))
            case ops.LoadThread(tenant, thread_id, last, before):
                return self._load((tenant, thread_id), last, before)
            case ops.CountMessages(tenant, thread_id):
                thread = self._threads.get((tenant, thread_id))
                return 0 if thread is None else len(thread.messages)
            case ops.GetThread(tenant, thread_id):
                thread = self._threads.get((tenant, thread_id))
                if thread is None:
                    raise NotFound(f"no thread {thread_id!r} for tenant {tenant!r}")
                return thread.info(tenant, thread_id)
            case ops.ListThreads(tenant, limit, offset):
                mine = list(reversed(self._tenants.get(tenant, {})))[offset : offset + limit]
                return [self._threads[tenant, tid].info(tenant, tid) for tid in mine]
            case ops.SetThreadMetadata(tenant, thread_id, metadata):
                thread = self._touch((tenant, thread_id))
                thread.metadata = dict(metadata)
                return thread.info(tenant, thread_id)
            case ops.RestoreThread(tenant, thread_id, metadata, _, created_at, updated_at):
                thread = self._touch((tenant, thread_id))
                thread.metadata = dict(metadata)
                thread.created_at, thread.updated_at = created_at, updated_at
                self._settle((tenant, thread_id))
                return thread.info(tenant, thread_id)
            case ops.ClearThread(tenant, thread_id):
                thread = self._threads.get((tenant, thread_id))
                if thread is None:
                    return 0
                removed = len(thread.messages)
                thread.messages, thread.positions, thread.trimmed = [], {}, 0
                self._touch((tenant, thread_id))
                return removed
            case ops.DeleteThread(tenant, thread_id):
                return self._forget((tenant, thread_id)) is not None
            case ops.ClearTenant(tenant):
                doomed = list(self._tenants.get(tenant, ()))
                for thread_id in doomed:
                    self._forget((tenant, thread_id))
                return len(doomed)
            case ops.SearchMessages(tenant, query, thread_id, limit):
                return self._search(tenant, query, thread_id, limit)
            case FindThreads(tenant, user_id):
                return sorted(
                    k[1]
                    for k, t in self._threads.items()
                    if k[0] == tenant and t.metadata.get(USER_KEY) == user_id
                )
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._tombstones.lift(op)
            case ops.GetThreadTTL(tenant, thread_id):
                thread = self._threads.get((tenant, thread_id))
                return None if thread is None else thread.ttl
            case ops.SetThreadTTL(tenant, thread_id, ttl):
                thread = self._threads.get((tenant, thread_id))
                if thread is not None:
                    thread.ttl = ttl
                return thread is not None
            case ops.SweepThreads():
                return self._sweep(op)
        raise InvalidInput(f"the memory backend cannot run {type(op).__name__}")

    def _erase(self, op: EraseSubject) -> ErasureCounts:
        if op.whole_tenant:
            doomed = [k for k in self._threads if k[0] == op.tenant]
        else:
            wanted = dict.fromkeys((op.tenant, t) for t in op.thread_ids)
            doomed = [k for k in wanted if k in self._threads]
        counts = ErasureCounts(
            threads=len(doomed), messages=sum(len(self._threads[k].messages) for k in doomed)
        )
        if not op.dry_run:
            self._tombstones.place(op.tombstones)
            for key in doomed:
                self._forget(key)
        return counts

    def _append(self, key: tuple[str, str], messages: tuple[Message, ...]) -> None:
        existing = self._threads.get(key)
        if existing is not None:
            for m in messages:
                if m.id in existing.positions:
                    raise _duplicate(m.id, key[1])
        thread = self._touch(key)
        for m in messages:
            thread.positions[m.id or ""] = thread.trimmed + len(thread.messages)
            thread.messages.append(m)
        cap = self.max_messages_per_thread
        if cap is not None and len(thread.messages) > cap:
            drop = len(thread.messages) - cap
            _trim(thread, tool_safe_cut(drop, thread.messages[drop:]))

    def _sweep(self, op: ops.SweepThreads) -> ops.ThreadSweep:
        """Pick what ``op``'s policy removes (see `memfold.retention`), then remove it unless
        this is a dry run."""
        policy, now = op.policy, op.now
        tenants = list(self._tenants) if op.tenant is None else [op.tenant]
        doomed: list[tuple[str, str]] = []
        for tenant in tenants:
            order = list(self._tenants.get(tenant, ()))
            kept = []
            for thread_id in order:  # least recently updated first
                thread = self._threads[tenant, thread_id]
                ttl = thread.ttl if thread.ttl is not None else policy.ttl_seconds
                if ttl is not None and thread.updated_at + timedelta(seconds=ttl) <= now:
                    doomed.append((tenant, thread_id))
                else:
                    kept.append(thread_id)
            if policy.max_threads is not None and len(kept) > policy.max_threads:
                excess = len(kept) - policy.max_threads
                doomed += [(tenant, thread_id) for thread_id in kept[:excess]]
        removed = SweepResult(threads=len(doomed))
        removed += SweepResult(messages=sum(len(self._threads[k].messages) for k in doomed))
        cuts: dict[tuple[str, str], int] = {}
        gone = set(doomed)
        cutoff = None
        if policy.max_age_seconds is not None:
            cutoff = now - timedelta(seconds=policy.max_age_seconds)
        if policy.keep_last is not None or cutoff is not None:
            for tenant in tenants:
                for thread_id in self._tenants.get(tenant, ()):
                    key = (tenant, thread_id)
                    if key in gone:
                        continue
                    thread = self._threads[key]
                    messages = thread.messages
                    cut = 0 if policy.keep_last is None else len(messages) - policy.keep_last
                    cut = tool_safe_cut(cut, messages[max(cut, 0) :], cutoff)
                    if cut <= 0:
                        continue
                    if cut == len(messages) and cutoff is not None and thread.updated_at < cutoff:
                        doomed.append(key)  # emptied, and not written within max_age
                        removed += SweepResult(threads=1, messages=cut)
                    else:
                        cuts[key] = cut
                        removed += SweepResult(messages=cut)
        if not op.dry_run:
            for key in doomed:
                self._forget(key)
            for key, cut in cuts.items():
                _trim(self._threads[key], cut)
        return ops.ThreadSweep(removed, (*doomed, *cuts))

    def _update(
        self, key: tuple[str, str], messages: tuple[Message, ...], keep_times: bool
    ) -> None:
        found = self._threads.get(key)
        positions = found.positions if found is not None else {}
        missing = [m.id for m in messages if m.id not in positions]
        if missing:
            raise NotFound(f"no message {missing[0]!r} in thread {key[1]!r}: nothing changed")
        if found is None:
            return
        for m in messages:
            found.messages[positions[m.id or ""] - found.trimmed] = m
        if not keep_times:
            self._touch(key)

    def _delete_messages(self, key: tuple[str, str], ids: set[str]) -> list[Message]:
        found = self._threads.get(key)
        if found is None:
            return []
        removed = [m for m in found.messages if m.id in ids]
        if removed:
            kept = [m for m in found.messages if m.id not in ids]
            found.messages, found.positions, found.trimmed = [], {}, 0
            for m in kept:
                found.positions[m.id or ""] = len(found.messages)
                found.messages.append(m)
            self._touch(key)
        return removed

    def _load(self, key: tuple[str, str], last: int | None, before: str | None) -> list[Message]:
        thread = self._threads.get(key)
        if thread is None:
            if before is not None:
                raise NotFound(f"no message {before!r} in thread {key[1]!r}")
            return []
        end = len(thread.messages)
        if before is not None:
            position = thread.positions.get(before)
            if position is None:
                raise NotFound(f"no message {before!r} in thread {key[1]!r}")
            end = position - thread.trimmed
        start = 0 if last is None else max(0, end - last)
        return thread.messages[start:end]

    def _search(
        self, tenant: str, query: str, thread_id: str | None, limit: int
    ) -> list[MessageHit]:
        terms = set(tokenize(query))
        if not terms:
            return []
        hits: list[MessageHit] = []
        for (owner, tid), thread in self._threads.items():
            if owner != tenant or (thread_id is not None and tid != thread_id):
                continue
            for m in thread.messages:
                words = tokenize(m.text)
                if terms.issubset(words):
                    score = sum(words.count(t) for t in terms) / (1 + len(words)) ** 0.5
                    hits.append(MessageHit(tid, m, score))
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:limit]


def _trim(thread: _Thread, drop: int) -> None:
    """Remove ``thread``'s oldest ``drop`` messages (its update time stays)."""
    for m in thread.messages[:drop]:
        del thread.positions[m.id or ""]
    del thread.messages[:drop]
    thread.trimmed += drop


_REFUSED_WHEN_ERASED = (
    ops.AppendMessages,
    ops.ReplaceThread,
    ops.UpdateMessages,
    ops.SetThreadMetadata,
    ops.RestoreThread,
)
"""The writes that could bring an erased thread back."""


def _duplicate(message_id: str | None, thread_id: str) -> Conflict:
    return Conflict(
        f"message id {message_id!r} is already in thread {thread_id!r}: "
        "append new messages with new ids (or leave id empty to have one assigned)"
    )
