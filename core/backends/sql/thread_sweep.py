"""Retention sweeps of SQL threads as plans (see `memfold.backends.sql.plans`): pure, no I/O.

Every statement is an index search, never a scan of a table (schema step 5 adds the indexes):

- tenants, one at a time: the next tenant after the last (``threads_key``);
- threads past their own TTL: ``threads_ttl``, on ``(tenant, updated_at + ttl)`` for the threads
  that have one; past the policy's TTL: ``threads_recent`` ``(tenant, updated_at)``;
- threads past ``max_threads``: ``threads_recent`` read newest first, past the first N;
- threads over ``keep_last`` messages: ``threads_size`` ``(tenant, message_count)`` on
  PostgreSQL; on SQLite, the tenant's threads through ``threads_key`` (schema step 7 dropped
  ``threads_size`` there: each append moved its thread in it, a page written per append);
- threads whose first message is older than ``max_age_seconds``: ``threads_first``
  ``(tenant, first_us)`` (schema step 8), which every write keeps at or before the first
  message's time (a sweep that reads it sets it exactly);
- a thread's oldest messages: the primary key ``(thread, seq)`` (on SQLite, the thread's seq
  index), read from the front.

The cut never leaves a tool result without its call: it moves past the tool results that would
start what stays, and past every message older than ``max_age_seconds`` after them
(`memfold.retention.tool_safe_cut`). A sweep runs in one transaction; a dry run is the same
sweep rolled back, so it counts exactly what the sweep would remove.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import BigInteger, ClauseElement, Integer, bindparam, delete, select, update

from memfold import ops
from memfold.backends.bodies import micros
from memfold.backends.sql.plans import Plan
from memfold.backends.sql.plans import _message as message_of
from memfold.backends.sql.schema import Tables
from memfold.retention import SweepResult, cut_takes

__all__ = ["ThreadSweepPlans"]

PAGE: Final = 200
"""Messages read at a time from the front of a thread."""


class ThreadSweepPlans:
    """The plans for ``get_thread_ttl``, ``set_thread_ttl`` and ``sweep`` on one set of thread
    tables."""

    def __init__(self, tables: Tables) -> None:
        t, m = tables.threads, tables.messages
        row = (t.c.id, t.c.thread_id, t.c.message_count)
        in_tenant = t.c.tenant == bindparam("tenant")
        self._set_ttl = (
            update(t)
            .where(t.c.tenant == bindparam("k_tenant"), t.c.thread_id == bindparam("k_thread"))
            .values(ttl=bindparam("ttl"))
        )
        self._get_ttl = select(t.c.ttl).where(
            t.c.tenant == bindparam("k_tenant"), t.c.thread_id == bindparam("k_thread")
        )
        self._next_tenant = (
            select(t.c.tenant).where(t.c.tenant > bindparam("after")).order_by(t.c.tenant).limit(1)
        )
        self._own_ttl_due = select(*row).where(
            in_tenant, t.c.ttl.is_not(None), t.c.updated_at + t.c.ttl <= bindparam("now")
        )
        self._idle = select(*row).where(
            in_tenant, t.c.updated_at <= bindparam("idle"), t.c.ttl.is_(None)
        )
        self._past_max_threads = (
            select(*row)
            .where(in_tenant)
            .order_by(t.c.updated_at.desc())
            .offset(bindparam("max_threads", type_=Integer))
        )
        self._over_count = select(*row).where(
            in_tenant, t.c.message_count > bindparam("keep", type_=Integer)
        )
        self._aged = select(*row).where(
            in_tenant, t.c.first_us < bindparam("cutoff_us", type_=BigInteger)
        )
        self._lock = (
            select(t.c.message_count, t.c.updated_at)
            .where(t.c.id == bindparam("id"))
            .with_for_update()
        )  # a plain SELECT on SQLite, whose writers hold the whole database
        self._front = (
            select(m.c.seq, m.c.message_id, m.c.body, m.c.created_us)
            .where(m.c.thread == bindparam("id"))
            .order_by(m.c.seq)
            .limit(PAGE)
            .offset(bindparam("offset", type_=Integer))
        )
        self._drop_front = delete(m).where(
            m.c.thread == bindparam("id"), m.c.seq <= bindparam("last")
        )
        self._first = (
            select(m.c.message_id, m.c.body, m.c.created_us)
            .where(m.c.thread == bindparam("id"))
            .order_by(m.c.seq)
            .limit(1)
        )
        self._shrink = (
            update(t)
            .where(t.c.id == bindparam("id"))
            .values(
                message_count=t.c.message_count - bindparam("removed"),
                first_us=bindparam("first_us", type_=BigInteger),
            )
        )
        self._drop_messages = delete(m).where(m.c.thread == bindparam("id"))
        self._drop_thread = delete(t).where(t.c.id == bindparam("id"))

    @property
    def prepared(self) -> list[ClauseElement]:
        """Every statement the plans yield, for a driver to compile once."""
        return [v for v in vars(self).values() if isinstance(v, ClauseElement)]

    def get_ttl(self, op: ops.GetThreadTTL) -> Plan:
        """One thread's own TTL (None: none, or no such thread)."""
        ttl = (yield self._get_ttl, {"k_tenant": op.tenant, "k_thread": op.thread_id}).scalar()
        return None if ttl is None else float(ttl)

    def set_ttl(self, op: ops.SetThreadTTL) -> Plan:
        """Set or clear one thread's own TTL; returns whether the thread exists."""
        params = {"k_tenant": op.tenant, "k_thread": op.thread_id, "ttl": op.ttl_seconds}
        return (yield self._set_ttl, params).rowcount > 0

    def sweep(self, op: ops.SweepThreads) -> Plan:
        """Remove what ``op``'s policy says, tenant by tenant; returns what went."""
        policy, now = op.policy, op.now.timestamp()
        sweep = _Sweep()
        tenant = op.tenant
        if tenant is None:
            tenant = (yield self._next_tenant, {"after": ""}).scalar()
        while tenant is not None:
            key = {"tenant": tenant}
            doomed = list((yield self._own_ttl_due, {**key, "now": now}).rows)
            if policy.ttl_seconds is not None:
                idle = now - policy.ttl_seconds
                doomed += (yield self._idle, {**key, "idle": idle}).rows
            for thread, thread_id, count in doomed:
                yield from self._delete(sweep, tenant, thread, thread_id, count)
            if policy.max_threads is not None:
                params = {**key, "max_threads": policy.max_threads}
                for thread, thread_id, count in (yield self._past_max_threads, params).rows:
                    yield from self._delete(sweep, tenant, thread, thread_id, count)
            cutoff = None if policy.max_age_seconds is None else now - policy.max_age_seconds
            if policy.keep_last is not None:
                keep = policy.keep_last
                params = {**key, "keep": keep}
                for thread, thread_id, _count in (yield self._over_count, params).rows:
                    yield from self._trim(sweep, tenant, thread, thread_id, keep, cutoff)
            if cutoff is not None:
                # Every thread whose first message is older: a microsecond to spare for rounding.
                params = {**key, "cutoff_us": math.ceil(cutoff * 1_000_000) + 1}
                for thread, thread_id, _count in (yield self._aged, params).rows:
                    yield from self._trim(sweep, tenant, thread, thread_id, None, cutoff)
            if op.tenant is not None:
                break
            tenant = (yield self._next_tenant, {"after": tenant}).scalar()
        return ops.ThreadSweep(sweep.removed, tuple(sweep.changed))

    def _delete(self, sweep: _Sweep, tenant: str, thread: int, thread_id: str, count: int) -> Plan:
        yield self._drop_messages, {"id": thread}
        if (yield self._drop_thread, {"id": thread}).rowcount:
            sweep.removed += SweepResult(threads=1, messages=count)
            sweep.changed.append((tenant, thread_id))

    def _trim(
        self,
        sweep: _Sweep,
        tenant: str,
        thread: int,
        thread_id: str,
        keep: int | None,
        cutoff: float | None,
    ) -> Plan:
        """Remove a thread's oldest messages past ``keep`` or older than ``cutoff``; a thread
        left empty and not written since ``cutoff`` goes too (whichever rule emptied it). The
        thread's ``first_us`` becomes exact (a thread a max-age sweep finds nothing to cut from
        holds a message whose time only its body has, or was updated to a later time)."""
        found = (yield self._lock, {"id": thread}).rows
        if not found:
            return
        count, updated_at = found[0]
        cut = 0 if keep is None else max(count - keep, 0)
        last = None
        if cut > 0 or cutoff is not None:
            aged = None if cutoff is None else datetime.fromtimestamp(cutoff, UTC)
            cut, last = yield from self._boundary(thread, cut, aged)
        if last is None:
            if cutoff is not None:
                first = yield from self._first_us(thread)
                yield self._shrink, {"id": thread, "removed": 0, "first_us": first}
            return
        removed = (yield self._drop_front, {"id": thread, "last": last}).rowcount
        if removed == count and cutoff is not None and updated_at < cutoff:
            yield self._drop_thread, {"id": thread}
            sweep.removed += SweepResult(threads=1)
        else:
            first = yield from self._first_us(thread)
            yield self._shrink, {"id": thread, "removed": removed, "first_us": first}
        sweep.removed += SweepResult(messages=removed)
        sweep.changed.append((tenant, thread_id))

    def _first_us(self, thread: int) -> Plan:
        """When the thread's first message was created (µs; None: no messages, or no time)."""
        rows = (yield self._first, {"id": thread}).rows
        return micros(message_of(*rows[0]).created_at) if rows else None

    def _boundary(self, thread: int, cut: int, cutoff: datetime | None) -> Plan:
        """The cut at or after ``cut`` that takes every message `cut_takes` does, and the seq
        of its last message (None: the cut is 0, or the thread has fewer messages than it)."""
        offset = max(cut - 1, 0)
        rows = (yield self._front, {"id": thread, "offset": offset}).rows
        if not rows:
            return cut, None
        last, following = None, rows
        if cut > 0:
            last, following = rows[0][0], rows[1:]
        while True:
            for seq, message_id, body, created_us in following:
                if not cut_takes(message_of(message_id, body, created_us), cut, cutoff):
                    return cut, last
                cut, last = cut + 1, seq
            if len(rows) < PAGE:
                return cut, last
            offset += len(rows)
            rows = following = (yield self._front, {"id": thread, "offset": offset}).rows


class _Sweep:
    """What a sweep has removed so far, and the threads it touched."""

    __slots__ = ("changed", "removed")

    def __init__(self) -> None:
        self.removed = SweepResult()
        self.changed: list[tuple[str, str]] = []
