"""A hot store (Redis) in front of a durable one (SQL): write-through, reads served hot when warm.

Writes go to the durable store first, so a message acknowledged is a message committed there;
the same operation is then applied to the hot store. An append goes to the hot store only
right after the message it follows in the durable store (else the hot copy is dropped), so
writers appending at once, from any number of processes, never leave the hot copy in another
order. Only full or partial thread loads are served hot; counts, thread listings, metadata and
search always come from the durable store (so ``capabilities`` are the durable store's).
Retention sweeps run on the durable store (with its policy by default), and every thread a
sweep changed is dropped from the hot store.

A thread is *warm* when the hot store holds exactly as many of its messages as the durable
store, before and after the hot read, and this process has no unapplied write for it. A cold
read loads the thread from the durable store and copies it into the hot store (re-warming it).

When the hot store raises `BackendUnavailable`, reads and writes go on against the durable
store and a warning is logged (at most once every ``warn_every`` seconds). Threads written while
the hot store was unreachable are remembered and dropped from it once it is back, so it never
serves them stale. Do not give the hot store ``max_messages``: a trimmed thread is never warm.

Examples:
    >>> from memfold import Message, open_store
    >>> store = TieredThreadStore(open_store("memory://"), open_store("memory://"))
    >>> _ = store.append("t1", Message(role="user", content="hi"))
    >>> [m.content for m in store.load("t1")], store.durable.count("t1")
    (['hi'], 1)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import replace
from typing import Any, Final, TypeVar, cast

from memfold import ops
from memfold.errors import BackendUnavailable, MemfoldError
from memfold.model import JSON, Message
from memfold.schema_steps import SchemaSteps
from memfold.stores import BaseThreadStore, encode_json
from memfold.tombstones import EraseSubject, FindThreads, LiftTombstones

__all__ = ["TieredThreadStore", "hot_erasure_failed"]

T = TypeVar("T")

log = logging.getLogger("memfold.tiered")

MAX_DIRTY: Final = 100_000
"""Threads remembered as written while the hot store was down; past this, it is not trusted."""

_WRITES: Final = (
    ops.AppendMessages,
    ops.ReplaceThread,
    ops.UpdateMessages,
    ops.DeleteMessages,
    ops.SetThreadMetadata,
    ops.RestoreThread,
    ops.ClearThread,
    ops.DeleteThread,
)
"""The writes to one thread (`ops.ClearTenant` is the one write to a whole tenant)."""


def hot_erasure_failed(error: MemfoldError, lifting: bool) -> MemfoldError:
    """The error to raise when a tiered store's hot store failed an erasure (or, with
    ``lifting``, the lifting of one) that its durable store has not run (has run)."""
    if not isinstance(error, BackendUnavailable):
        return error
    if lifting:
        return BackendUnavailable(
            "the erasure was lifted in the durable store but not in the hot store, which is "
            f"unreachable: run lift_erasure again once it is back. {error}"
        )
    return BackendUnavailable(
        "nothing was erased from this tiered store: its hot store is unreachable, and erasing "
        "only the durable store would leave the hot copy in Redis. Run erase again once it is "
        f"back. {error}"
    )


class TieredThreadStore(BaseThreadStore):
    """``hot`` (usually `RedisThreadStore`) in front of ``durable`` (usually `SQLThreadStore`).

    Args:
        hot: the fast store that serves warm reads; may be unreachable at times.
        durable: the store of record; every acknowledged write is committed here first.
        warn_every: the least number of seconds between two "hot store unreachable" warnings.
    """

    name = "tiered"

    def __init__(
        self, hot: BaseThreadStore, durable: BaseThreadStore, *, warn_every: float = 30.0
    ) -> None:
        super().__init__(durable.capabilities, retention=durable.retention)
        self.hot = hot
        self.durable = durable
        self.warn_every = warn_every
        self._last_warning = -float("inf")
        self._dirty: set[tuple[str, str]] = set()
        self._dirty_tenants: set[str] = set()
        self._trusted = True

    @property
    def tombstone_place(self) -> Hashable:
        """The durable store's (the hot store's copies of its tombstones are not counted)."""
        return self.durable.tombstone_place

    # Shared, pure bookkeeping.

    def _hot_failed(self, op: ops.Op[Any], error: MemfoldError) -> None:
        """Remember that ``op`` may not be reflected in the hot store, and warn (rate-limited)."""
        if isinstance(op, ops.ClearTenant):
            self._dirty_tenants.add(op.tenant)
        elif isinstance(op, _WRITES):
            self._dirty.add((op.tenant, op.thread_id))
        if len(self._dirty) + len(self._dirty_tenants) > MAX_DIRTY and self._trusted:
            self._trusted = False
            log.error("hot store missed too many writes: tiered reads now go to the durable store")
        now = time.monotonic()
        if isinstance(error, BackendUnavailable) and now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning("hot store unavailable, using the durable store only: %s", error)

    def _is_dirty(self, tenant: str, thread_id: str) -> bool:
        return not self._trusted or (tenant, thread_id) in self._dirty

    def _warm_ops(
        self, op: ops.LoadThread, messages: list[Message], metadata: dict[str, JSON]
    ) -> tuple[ops.ReplaceThread, ops.SetThreadMetadata]:
        bodies = tuple(encode_json(m.to_dict(stored=True), f"message {m.id!r}") for m in messages)
        return (
            ops.ReplaceThread(op.tenant, op.thread_id, tuple(messages), bodies),
            ops.SetThreadMetadata(
                op.tenant, op.thread_id, metadata, encode_json(metadata, "thread metadata")
            ),
        )

    @staticmethod
    def _full(op: ops.LoadThread) -> ops.LoadThread:
        return ops.LoadThread(op.tenant, op.thread_id)

    @staticmethod
    def _whole(op: ops.LoadThread, loaded: list[Message], count: int) -> bool:
        """Whether a hot load of a whole thread returned all ``count`` messages. A partial
        load is checked by counting the hot copy again instead: a warm-up that read the
        durable store before the last append and lands late leaves it short, and a hot copy
        only ever grows by appends that follow the durable order, so an unchanged count means
        unchanged messages."""
        return op.last is None and op.before is None and len(loaded) == count

    @staticmethod
    def _before(op: ops.AppendMessages) -> ops.LoadThread:
        """The durable read of the message an append landed after (its order is fixed once
        the append is committed, whatever other writers append meanwhile)."""
        return ops.LoadThread(op.tenant, op.thread_id, last=1, before=op.messages[0].id)

    @staticmethod
    def _hot_append(op: ops.AppendMessages, before: list[Message]) -> ops.AppendMessages:
        """``op`` for the hot store: appended only right after the same message as in the
        durable store, so concurrent writers can never leave the hot copy in another order
        (a refused append drops the hot copy; the next read warms it again)."""
        return replace(op, follows=str(before[0].id) if before else "")

    # Sync driver.

    def _purge(self) -> None:
        """Drop from the hot store what it missed while down; whether it is now consistent."""
        for tenant in list(self._dirty_tenants):
            self.hot.execute(ops.ClearTenant(tenant))
            self._dirty_tenants.discard(tenant)
        for tenant, thread_id in list(self._dirty):
            self.hot.execute(ops.DeleteThread(tenant, thread_id))
            self._dirty.discard((tenant, thread_id))

    def _write_hot(self, op: ops.Op[Any]) -> None:
        try:
            self.hot.execute(op)
        except MemfoldError as error:
            try:  # the hot copy may now be wrong: drop it so the next read re-warms it
                if isinstance(op, ops.ClearTenant | ops.DeleteThread):
                    raise
                if isinstance(op, _WRITES):
                    self.hot.execute(ops.DeleteThread(op.tenant, op.thread_id))
            except MemfoldError:
                self._hot_failed(op, error)

    def _load(self, op: ops.LoadThread) -> list[Message]:
        try:
            if self._trusted and (self._dirty or self._dirty_tenants):
                self._purge()
            if not self._is_dirty(op.tenant, op.thread_id):
                counting = ops.CountMessages(op.tenant, op.thread_id)
                count = self.durable.execute(counting)
                if count and count == self.hot.execute(counting):
                    loaded = self.hot.execute(op)
                    if self._whole(op, loaded, count) or self.hot.execute(counting) == count:
                        return loaded
        except BackendUnavailable as error:
            self._hot_failed(op, error)
            return self.durable.execute(op)
        full = self.durable.execute(self._full(op))
        if full:
            info = self.durable.execute(ops.GetThread(op.tenant, op.thread_id))
            try:
                replace, metadata = self._warm_ops(op, full, dict(info.metadata))
                self.hot.execute(replace)
                self.hot.execute(metadata)
            except MemfoldError as error:
                self._hot_failed(op, error)
        return full if op == self._full(op) else self.durable.execute(op)

    def _erase(self, op: EraseSubject | LiftTombstones) -> Any:
        if isinstance(op, LiftTombstones):
            lifted = self.durable.execute(op)
            try:
                self.hot.execute(op)
            except MemfoldError as error:
                raise hot_erasure_failed(error, lifting=True) from error
            return lifted
        if not op.dry_run:
            try:
                self.hot.execute(op)
            except MemfoldError as error:
                raise hot_erasure_failed(error, lifting=False) from error
        return self.durable.execute(op)

    def execute(self, op: ops.Op[T]) -> T:
        """Write durable then hot; serve loads hot when warm; everything else durable (an
        erasure: see the module's docstring)."""
        if isinstance(op, ops.LoadThread):
            return self._load(op)  # type: ignore[return-value]
        if isinstance(op, EraseSubject | LiftTombstones):
            return cast("T", self._erase(op))
        if isinstance(op, FindThreads):
            return cast("T", self.durable.execute(op))
        result = self.durable.execute(op)
        hot_op: ops.Op[Any] = op
        if isinstance(op, ops.AppendMessages) and op.messages:
            try:
                hot_op = self._hot_append(op, self.durable.execute(self._before(op)))
            except MemfoldError:  # stored, but where is unknown here: drop the hot copy
                hot_op = ops.DeleteThread(op.tenant, op.thread_id)
        if isinstance(hot_op, (*_WRITES, ops.ClearTenant)):
            self._write_hot(hot_op)
        elif isinstance(op, ops.SweepThreads) and not op.dry_run:
            for tenant, thread_id in cast("ops.ThreadSweep", result).changed:
                self._write_hot(ops.DeleteThread(tenant, thread_id))
        return result

    # Async driver: the same steps, awaited.

    async def _apurge(self) -> None:
        for tenant in list(self._dirty_tenants):
            await self.hot.aexecute(ops.ClearTenant(tenant))
            self._dirty_tenants.discard(tenant)
        for tenant, thread_id in list(self._dirty):
            await self.hot.aexecute(ops.DeleteThread(tenant, thread_id))
            self._dirty.discard((tenant, thread_id))

    async def _awrite_hot(self, op: ops.Op[Any]) -> None:
        try:
            await self.hot.aexecute(op)
        except MemfoldError as error:
            try:
                if isinstance(op, ops.ClearTenant | ops.DeleteThread):
                    raise
                if isinstance(op, _WRITES):
                    await self.hot.aexecute(ops.DeleteThread(op.tenant, op.thread_id))
            except MemfoldError:
                self._hot_failed(op, error)

    async def _aload(self, op: ops.LoadThread) -> list[Message]:
        try:
            if self._trusted and (self._dirty or self._dirty_tenants):
                await self._apurge()
            if not self._is_dirty(op.tenant, op.thread_id):
                counting = ops.CountMessages(op.tenant, op.thread_id)
                count = await self.durable.aexecute(counting)
                if count and count == await self.hot.aexecute(counting):
                    loaded = await self.hot.aexecute(op)
                    if self._whole(op, loaded, count) or await self.hot.aexecute(counting) == count:
                        return loaded
        except BackendUnavailable as error:
            self._hot_failed(op, error)
            return await self.durable.aexecute(op)
        full = await self.durable.aexecute(self._full(op))
        if full:
            info = await self.durable.aexecute(ops.GetThread(op.tenant, op.thread_id))
            try:
                replace, metadata = self._warm_ops(op, full, dict(info.metadata))
                await self.hot.aexecute(replace)
                await self.hot.aexecute(metadata)
            except MemfoldError as error:
                self._hot_failed(op, error)
        return full if op == self._full(op) else await self.durable.aexecute(op)

    async def _aerase(self, op: EraseSubject | LiftTombstones) -> Any:
        if isinstance(op, LiftTombstones):
            lifted = await self.durable.aexecute(op)
            try:
                await self.hot.aexecute(op)
            except MemfoldError as error:
                raise hot_erasure_failed(error, lifting=True) from error
            return lifted
        if not op.dry_run:
            try:
                await self.hot.aexecute(op)
            except MemfoldError as error:
                raise hot_erasure_failed(error, lifting=False) from error
        return await self.durable.aexecute(op)

    async def aexecute(self, op: ops.Op[T]) -> T:
        """Async `execute`."""
        if isinstance(op, ops.LoadThread):
            return await self._aload(op)  # type: ignore[return-value]
        if isinstance(op, EraseSubject | LiftTombstones):
            return cast("T", await self._aerase(op))
        if isinstance(op, FindThreads):
            return cast("T", await self.durable.aexecute(op))
        result = await self.durable.aexecute(op)
        hot_op: ops.Op[Any] = op
        if isinstance(op, ops.AppendMessages) and op.messages:
            try:
                hot_op = self._hot_append(op, await self.durable.aexecute(self._before(op)))
            except MemfoldError:
                hot_op = ops.DeleteThread(op.tenant, op.thread_id)
        if isinstance(hot_op, (*_WRITES, ops.ClearTenant)):
            await self._awrite_hot(hot_op)
        elif isinstance(op, ops.SweepThreads) and not op.dry_run:
            for tenant, thread_id in cast("ops.ThreadSweep", result).changed:
                await self._awrite_hot(ops.DeleteThread(tenant, thread_id))
        return result

    def setup(self) -> int:
        """Set up both stores (an unreachable hot store is only warned about); returns the
        durable store's schema version."""
        version = self.durable.setup()
        try:
            self.hot.setup()
        except BackendUnavailable as error:
            self._hot_failed(ops.ClearTenant("\x00setup"), error)
            self._dirty_tenants.discard("\x00setup")
        return version

    async def asetup(self) -> int:
        """Async `setup`."""
        version = await self.durable.asetup()
        try:
            await self.hot.asetup()
        except BackendUnavailable as error:
            self._hot_failed(ops.ClearTenant("\x00setup"), error)
            self._dirty_tenants.discard("\x00setup")
        return version

    def schema_steps(self) -> list[SchemaSteps]:
        """The durable store's steps, then the hot store's."""
        return [*self.durable.schema_steps(), *self.hot.schema_steps()]

    def purge_deleted(self) -> None:
        """Purge deleted data in both stores."""
        self.durable.purge_deleted()
        self.hot.purge_deleted()

    async def apurge_deleted(self) -> None:
        """Async `purge_deleted`."""
        await self.durable.apurge_deleted()
        await self.hot.apurge_deleted()

    def close(self) -> None:
        """Close both stores."""
        try:
            self.hot.close()
        finally:
            self.durable.close()

    async def aclose(self) -> None:
        """Async `close`."""
        try:
            await self.hot.aclose()
        finally:
            await self.durable.aclose()
