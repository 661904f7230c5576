"""Retention sweeps of Redis threads as a flow of calls (see `memfold.retention`): pure, no I/O.

Every read is an index search or a read of one thread's front, never a scan of keys (the
indexes are the key layout's step 3, `memfold.backends.redis.keys`):

- tenants: the set of tenants (a sweep of every tenant), or the one named;
- whole threads (`scripts.SELECT_DOOMED`): past their own TTL (the tenant's TTL index), not
  written for the policy's TTL (the update-time index, read up to the cut-off), and the least
  recently updated beyond ``max_threads`` (the same index, read from the oldest);
- threads over ``keep_last`` messages: the size index, read from ``keep_last + 1`` up (it
  scores a thread by size class, at least its count: a thread just under ``keep_last`` may be
  read too, and is left as it is);
- threads that hold messages older than ``max_age_seconds``: the first-message-time index,
  read up to the cut-off;
- a thread's oldest messages: its list, read from the front a page at a time.

A thread is deleted only if it has not been written since it was picked, and its front cut
only if the front is still the one read (`scripts.DROP_THREADS`, `scripts.TRIM_FRONT`); a cut
never leaves a tool result without its call, and goes on past every message older than
``max_age_seconds`` (`memfold.retention.tool_safe_cut`). A dry run picks the same and changes
nothing.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias, TypeVar

from memfold import ops
from memfold.backends.redis import scripts
from memfold.backends.redis.calls import Call
from memfold.backends.redis.checkpoint_keys import micros
from memfold.backends.redis.elements import ElementCodec
from memfold.backends.redis.keys import (
    ThreadKeys,
    escape,
    tenant_keys,
    tenants_key,
    thread_keys,
    unescape,
)
from memfold.model import Message
from memfold.retention import SweepResult, cut_takes

__all__ = ["ThreadSweeps"]

T = TypeVar("T")
Flow: TypeAlias = Generator[Call[Any], Any, T]

PAGE: Final = 200
"""Messages read at a time from the front of a thread, and threads filled in per call."""
BATCH: Final = 100
"""Threads deleted per script call."""
ATTEMPTS: Final = 3
"""Reads of a thread's front before a sweep leaves a thread that keeps changing to the next."""


def _same(reply: Any) -> Any:
    return reply


def _script(script: scripts.Script, keys: tuple[str, ...], *args: str | bytes | int) -> Call[Any]:
    return Call(("EVALSHA", script.sha, len(keys), *keys, *args), _same, script)


def _triples(reply: list[Any]) -> Iterator[tuple[bytes, bytes, int]]:
    for i in range(0, len(reply), 3):
        yield reply[i], reply[i + 1], int(reply[i + 2])


class ThreadSweeps:
    """The sweep and layout-backfill flows of the threads under one key prefix."""

    def __init__(self, prefix: str, codec: ElementCodec) -> None:
        self.prefix = prefix
        self.codec = codec

    def sweep(self, op: ops.SweepThreads) -> Flow[ops.ThreadSweep]:
        """Apply ``op``'s policy to one tenant or every tenant; returns what went."""
        if op.tenant is None:
            names = yield Call(("SMEMBERS", tenants_key(self.prefix)), _same)
            tenants = sorted(unescape(name) for name in names)
        else:
            tenants = [op.tenant]
        removed = SweepResult()
        changed: list[tuple[str, str]] = []
        for tenant in tenants:
            found, touched = yield from self._tenant(tenant, op)
            removed += found
            changed += ((tenant, thread_id) for thread_id in touched)
        return ops.ThreadSweep(removed, tuple(changed))

    def _tenant(self, tenant: str, op: ops.SweepThreads) -> Flow[tuple[SweepResult, list[str]]]:
        policy, now = op.policy, micros(op.now)
        t = tenant_keys(self.prefix, tenant)
        idle = "" if policy.ttl_seconds is None else round(policy.ttl_seconds * 1_000_000)
        most = "" if policy.max_threads is None else policy.max_threads
        doomed = list(
            _triples((yield _script(scripts.SELECT_DOOMED, t.all, t.base, now, idle, most)))
        )
        removed = SweepResult()
        touched: list[str] = []
        if op.dry_run:
            removed += SweepResult(threads=len(doomed), messages=sum(c for *_, c in doomed))
            touched += (unescape(member) for member, *_ in doomed)
        for start in range(0, 0 if op.dry_run else len(doomed), BATCH):
            pairs = [
                x for member, updated, _ in doomed[start : start + BATCH] for x in (member, updated)
            ]
            reply = yield _script(scripts.DROP_THREADS, t.all, t.base, *pairs)
            for i in range(0, len(reply), 2):
                removed += SweepResult(threads=1, messages=int(reply[i + 1]))
                touched.append(unescape(reply[i]))
        candidates: set[bytes] = set()
        if policy.keep_last is not None:
            over = ("ZRANGEBYSCORE", t.sizes, policy.keep_last + 1, "+inf")
            candidates.update((yield Call(over, _same)))
        cutoff = None
        if policy.max_age_seconds is not None:
            cutoff = op.now - timedelta(seconds=policy.max_age_seconds)
            old = ("ZRANGEBYSCORE", t.firsts, "-inf", f"({micros(cutoff)}")
            candidates.update((yield Call(old, _same)))
        candidates.difference_update(member for member, *_ in doomed)
        for member in sorted(candidates):
            thread_id = unescape(member)
            keys = thread_keys(self.prefix, tenant, thread_id)
            cut = yield from self._trim(keys, policy.keep_last, cutoff, op.dry_run)
            if cut.total:
                removed += cut
                touched.append(thread_id)
        return removed, touched

    def _trim(
        self, keys: ThreadKeys, keep: int | None, cutoff: datetime | None, dry_run: bool
    ) -> Flow[SweepResult]:
        """Cut a thread's oldest messages past ``keep`` or older than ``cutoff``; a thread left
        empty by ``cutoff`` and not written since goes whole."""
        for _attempt in range(ATTEMPTS):
            count = yield Call(("LLEN", keys.messages), int)
            if count == 0:  # gone since it was indexed (evicted, or deleted by hand)
                if not dry_run:
                    yield Call(("ZREM", keys.sizes, keys.member), _same)
                    yield Call(("ZREM", keys.firsts, keys.member), _same)
                return SweepResult()
            cut = 0 if keep is None else max(count - keep, 0)
            if cut == 0 and cutoff is None:
                return SweepResult()
            boundary = yield from self._boundary(keys, cut, cutoff)
            if boundary is None:
                continue
            cut, last, after = boundary
            if cut == 0:
                return SweepResult()
            stamp = "" if cutoff is None else micros(cutoff)
            if dry_run:
                whole = False
                if not after and cutoff is not None:
                    updated = yield Call(("ZSCORE", keys.index, keys.member), _same)
                    whole = updated is not None and float(updated) < micros(cutoff)
                return SweepResult(threads=int(whole), messages=cut)
            args = (keys.member, cut, last, after, stamp)
            removed, whole = yield _script(scripts.TRIM_FRONT, keys.all, *args)
            if removed >= 0:
                return SweepResult(threads=whole, messages=removed)
        return SweepResult()

    def _page(self, keys: ThreadKeys, start: int) -> Flow[list[Message]]:
        elements = yield Call(("LRANGE", keys.messages, start, start + PAGE - 1), _same)
        messages: list[Message] = self.codec.decode_all(elements)
        return messages

    def _boundary(
        self, keys: ThreadKeys, cut: int, cutoff: datetime | None
    ) -> Flow[tuple[int, str, str] | None]:
        """The cut at or after ``cut`` that takes every message `cut_takes` does, the id of its
        last message ("" when the cut is 0) and of the message after it ("" when none); None
        when the thread has no message at ``cut - 1``."""
        position = max(cut - 1, 0)
        page = yield from self._page(keys, position)
        if not page:
            return None
        last, following = "", page
        if cut > 0:
            last, following = str(page[0].id), page[1:]
        while True:
            for message in following:
                if not cut_takes(message, cut, cutoff):
                    return cut, last, str(message.id)
                cut, last = cut + 1, str(message.id)
            if len(page) < PAGE:
                return cut, last, ""
            position += len(page)
            page = following = yield from self._page(keys, position)

    def backfill(self) -> Flow[int]:
        """Register every tenant and index every thread written before layout 5 (the upgrade
        to it: layout 3 added the indexes, 5 scores sizes by class; idempotent). Returns how
        many tenants were found."""
        pattern = _glob(self.prefix) + "{*}:threads"
        head, tail = len(self.prefix) + 1, len("}:threads")
        cursor, tenants = b"0", 0
        while True:
            scan = ("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", "zset")
            cursor, found = yield Call(scan, _same)
            for key in found:
                name = key.decode()[head:-tail]
                if "}" in name:  # another kind's index, such as P{T}:c:threads
                    continue
                tenants += 1
                yield Call(("SADD", tenants_key(self.prefix), name), _same)
                t = tenant_keys(self.prefix, unescape(name))
                start = 0
                while (yield _script(scripts.BACKFILL, t.all, t.base, start, PAGE)) == PAGE:
                    start += PAGE
            if int(cursor) == 0:
                return tenants


def _glob(text: str) -> str:
    """``text`` with Redis glob patterns' special characters escaped."""
    for special in "\\*?[]":
        text = text.replace(special, "\\" + special)
    return text


def register(prefix: str, tenant: str) -> Call[Any]:
    """The call that adds ``tenant`` to the set of tenants with threads."""
    return Call(("SADD", tenants_key(prefix), escape(tenant)), _same)
