"""A Redis checkpoint store in front of a durable one (SQL): write-through, reads served hot
when the hot copy of a thread is whole.

The design of `memfold.backends.tiered.TieredThreadStore`, for checkpoints:

- Every write goes to the durable store first, so a checkpoint acknowledged is a checkpoint
  committed there (leases are enforced there too); the same operation is then applied to the
  hot store, without the lease. A write of one thread is marked in flight in the hot store
  (`memfold.backends.redis.checkpoint_store.StartWrite`) before its durable write and unmarked
  after its hot one: while marked, the hot copy is not served, so a writer killed between the
  two tiers leaves no stale copy served as whole (which a later writer would fork from).
  Reads of a thread with a write in flight go to the durable store; once a mark is older than
  ``write_timeout`` its writer is taken for dead, and a read re-warms the thread.
- ``get``, ``list`` and channel histories of one thread are served hot when the hot store
  holds the whole thread:
  a mark (`memfold.backends.redis.checkpoint_store.MarkWhole`) that lives in the thread's own
  keys, so a Redis restart, an eviction, an expiry or a deletion takes it away, and that must
  be the same before and after the hot read. A read of a thread without the mark goes to the
  durable store and then copies the thread into the hot store and marks it (re-warming it);
  concurrent warm-ups and writes, from any number of processes, cannot leave a marked copy
  incomplete (see ``_warm``). Listings across threads, stats, a thread's own TTL
  (``get_thread_ttl``) and sweeps read the durable store; sweeps and other removals are applied
  to both, and every thread a sweep deleted from the durable store is dropped from the hot one
  (a warm-up copies no own TTL).
- The effect journal (`memfold.journal`) is the durable store's alone: its operations, reads
  included, run there only, and ``copy_thread`` and thread deletions carry it there.
- When the hot store fails, reads and writes go on against the durable store and a warning is
  logged (at most once every ``warn_every`` seconds). A thread whose hot write failed is
  dropped from the hot store, or, if that fails too, remembered and dropped once it is back;
  a failed removal across threads (a sweep, ``delete_for_runs``) is re-run then.
- Erasure (`memfold.erase`) runs on the hot store first, then on the durable one, as in
  `memfold.backends.tiered.TieredThreadStore`: once the hot tombstones are placed no warm-up
  can mark an erased thread whole again, and if the hot store is unreachable nothing is erased
  (a whole-marked hot copy left behind would be served once Redis is back); run the erasure
  again then. The effect journal is the durable store's, so it goes with the durable erasure.

Examples:
    >>> import uuid
    >>> from memfold.checkpoints import Blob, open_checkpoint_store
    >>> hot = open_checkpoint_store("redis://127.0.0.1:6379/0",
    ...                             key_prefix=f"doctest-{uuid.uuid4().hex}:")
    >>> store = TieredCheckpointStore(hot, open_checkpoint_store("memory://"))
    >>> store.put("t", "c1", Blob("json", b"{}"))
    >>> store.get("t").checkpoint_id, store.durable.get("t").checkpoint_id
    ('c1', 'c1')
    >>> hot.execute(IsWhole("default", "t")) is not None
    True
    >>> store.delete_thread("t")
    1
    >>> _ = hot.client.delete(*hot.client.scan_iter(f"{hot.key_prefix}*"))  # clean up
    >>> store.close()
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Generator, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from memfold import checkpoint_ops as ops
from memfold.backends.redis.checkpoint_store import (
    ClaimWhole,
    EndWrite,
    IsWhole,
    MarkWhole,
    RedisCheckpointStore,
    StartWrite,
    WritesInFlight,
)
from memfold.backends.tiered import MAX_DIRTY, hot_erasure_failed, log
from memfold.checkpoint_model import Checkpoint
from memfold.checkpoints import BaseCheckpointStore
from memfold.errors import BackendUnavailable, InvalidInput, MemfoldError
from memfold.journal import JOURNAL_OPS
from memfold.ops import Op
from memfold.schema_steps import SchemaSteps
from memfold.stores import encode_json
from memfold.tombstones import EraseSubject, FindThreads, LiftTombstones

__all__ = ["TieredCheckpointStore", "open_tiered"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Step:
    """Run ``op`` on ``store``; the flow gets the result back, or the `MemfoldError` thrown."""

    store: BaseCheckpointStore
    op: Op[Any]


Flow: TypeAlias = Generator[_Step, Any, T]

_THREAD_WRITES = (
    ops.PutCheckpoint,
    ops.PutCheckpointWrites,
    ops.DeleteCheckpointThread,
    ops.SetCheckpointThreadTTL,
)
_TENANT_WRITES = (ops.DeleteCheckpointRuns, ops.SweepCheckpoints)
_DURABLE_ONLY = (*JOURNAL_OPS, ops.ListEarlyWrites, ops.GetCheckpointThreadTTL)
"""Operations the durable store alone runs (the hot one cannot list early writes; a thread's
own TTL is read from the store of record)."""


class TieredCheckpointStore(BaseCheckpointStore):
    """``hot`` (a `RedisCheckpointStore`) in front of ``durable`` (usually `SQLCheckpointStore`).

    Args:
        hot: the fast store that serves reads of whole threads; may be unreachable at times.
        durable: the store of record; every acknowledged write is committed here first.
        warn_every: the least number of seconds between two "hot store unavailable" warnings.
        write_timeout: seconds after which a write still marked in flight counts as dead.
    """

    name = "tiered"
    reads_channel_history = True

    def __init__(
        self,
        hot: RedisCheckpointStore,
        durable: BaseCheckpointStore,
        *,
        warn_every: float = 30.0,
        write_timeout: float = 10.0,
    ) -> None:
        if not isinstance(hot, RedisCheckpointStore):
            raise InvalidInput(
                f"the hot tier must be a RedisCheckpointStore, got {type(hot).__name__}"
            )
        if not (
            isinstance(write_timeout, int | float)
            and not isinstance(write_timeout, bool)
            and 0 < write_timeout < 86_400
        ):
            raise InvalidInput(
                f"write_timeout must be seconds in (0, 86400), got {write_timeout!r}"
            )
        super().__init__(
            durable.capabilities, delta_policy=durable.delta_policy, retention=durable.retention
        )
        self.hot = hot
        self.durable = durable
        self.warn_every = warn_every
        self._timeout_ms = max(1, round(write_timeout * 1000))
        self._last_warning = -float("inf")
        self._dirty: set[tuple[str, str]] = set()
        self._replay: list[Op[Any]] = []
        self._trusted = True

    @property
    def tombstone_place(self) -> Hashable:
        """The durable store's (the hot store's copies of its tombstones are not counted)."""
        return self.durable.tombstone_place

    # Shared, pure bookkeeping.

    def _hot_failed(self, error: MemfoldError) -> None:
        now = time.monotonic()
        if isinstance(error, BackendUnavailable) and now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning("hot store unavailable, using the durable store only: %s", error)
        if len(self._dirty) + len(self._replay) > MAX_DIRTY and self._trusted:
            self._trusted = False
            log.error("hot store missed too many writes: tiered reads now go to the durable store")

    @staticmethod
    def _threads(op: Op[Any]) -> list[tuple[str, str]]:
        """The threads a write changes (none for writes across threads)."""
        if isinstance(op, _THREAD_WRITES):
            return [(op.tenant, op.thread_id)]
        if isinstance(op, ops.CopyCheckpointThread):
            return [(op.tenant, op.target)]
        if isinstance(op, ops.PruneCheckpointThreads):
            return [(op.tenant, t) for t in op.thread_ids]
        return []

    def _flow(self, op: Op[Any]) -> Flow[Any]:
        reads = (ops.GetCheckpoint, ops.ListCheckpoints, ops.ReadChannelHistory)
        if isinstance(op, reads) and op.thread_id is not None:  # one thread's read
            return self._read(op, op.tenant, op.thread_id)
        if isinstance(op, EraseSubject | LiftTombstones | FindThreads):
            return self._erasure(op)
        return self._write(op)

    def _erasure(self, op: EraseSubject | LiftTombstones | FindThreads) -> Flow[Any]:
        """Find threads in the durable store; erase from the hot store, then the durable one;
        lift in the durable store, then the hot one (see the module's docstring)."""
        if isinstance(op, EraseSubject) and not op.dry_run:
            try:
                yield _Step(self.hot, op)
            except MemfoldError as error:
                raise hot_erasure_failed(error, lifting=False) from error
        result = yield _Step(self.durable, op)
        if isinstance(op, LiftTombstones):
            try:
                yield _Step(self.hot, op)
            except MemfoldError as error:
                raise hot_erasure_failed(error, lifting=True) from error
        return result

    def _purge(self) -> Flow[None]:
        """Apply to the hot store what it missed while down (raises if it still is)."""
        while self._replay:
            yield _Step(self.hot, self._replay[0])
            self._replay.pop(0)
        for tenant, thread_id in list(self._dirty):
            yield _Step(self.hot, ops.DeleteCheckpointThread(tenant, thread_id))
            self._dirty.discard((tenant, thread_id))

    def _marked(self, op: Op[Any], token: str, start: bool) -> Flow[list[tuple[str, str]]]:
        """Mark the threads ``op`` writes in flight (``start``) or unmark them; returns those
        it marked (none once the hot store fails)."""
        threads = self._threads(op) if self._trusted else []
        for tenant, thread_id in threads:
            step = StartWrite if start else EndWrite
            try:
                yield _Step(self.hot, step(tenant, thread_id, token))
            except MemfoldError as error:
                self._hot_failed(error)
                return []
        return threads

    def _write(self, op: Op[T]) -> Flow[T]:
        token = uuid.uuid4().hex
        marked = yield from self._marked(op, token, start=True)
        try:
            result: T = yield from self._write_both(op)
        except MemfoldError:
            if marked:
                yield from self._marked(op, token, start=False)
            raise
        if marked:
            yield from self._marked(op, token, start=False)
        return result

    def _write_both(self, op: Op[T]) -> Flow[T]:
        result: T = yield _Step(self.durable, op)
        if isinstance(op, (ops.ReleaseThread, ops.CheckpointStats, *_DURABLE_ONLY)):
            return result  # leases, stats, early writes and the journal: the durable store's
        if isinstance(op, ops.SweepCheckpoints) and op.dry_run:
            return result  # the durable store's count is the answer
        hot_op: Op[Any] = op
        if isinstance(op, ops.PutCheckpoint | ops.PutCheckpointWrites):
            hot_op = dataclasses.replace(op, lease=None)
        try:
            yield _Step(self.hot, hot_op)
        except MemfoldError as error:
            threads = self._threads(op)
            try:  # the hot copy may now be wrong: drop it so the next read re-warms it
                if not threads or isinstance(op, ops.DeleteCheckpointThread):
                    raise
                for tenant, thread_id in threads:
                    yield _Step(self.hot, ops.DeleteCheckpointThread(tenant, thread_id))
            except MemfoldError:
                self._dirty.update(threads)
                if isinstance(op, _TENANT_WRITES):
                    self._replay.append(op)
                self._hot_failed(error)
        if isinstance(op, ops.SweepCheckpoints):  # the hot copy may lack the TTL that ran out
            yield from self._drop_hot(cast("ops.CheckpointSweep", result).deleted)
        return result

    def _drop_hot(self, threads: tuple[tuple[str, str], ...]) -> Flow[None]:
        """Drop ``threads`` from the hot store (those it fails to, once it is back)."""
        for i, (tenant, thread_id) in enumerate(threads):
            try:
                yield _Step(self.hot, ops.DeleteCheckpointThread(tenant, thread_id))
            except MemfoldError as error:
                self._dirty.update(threads[i:])
                self._hot_failed(error)
                return

    def _read(self, op: Op[T], tenant: str, thread_id: str) -> Flow[T]:
        try:
            if self._trusted and (self._dirty or self._replay):
                yield from self._purge()
            token = (yield _Step(self.hot, IsWhole(tenant, thread_id))) if self._trusted else None
            if token is not None:
                hot: T = yield _Step(self.hot, op)
                # Still marked by the same warm-up: no deletion or re-warm-up came in between.
                if (yield _Step(self.hot, IsWhole(tenant, thread_id))) == token:
                    return hot
        except MemfoldError as error:
            self._hot_failed(error)
            durable: T = yield _Step(self.durable, op)
            return durable
        result: T = yield _Step(self.durable, op)
        try:  # a write in flight will change the thread: warm it up once it is done
            if not (yield _Step(self.hot, WritesInFlight(tenant, thread_id, self._timeout_ms))):
                yield from self._warm(tenant, thread_id)
        except MemfoldError as error:
            self._hot_failed(error)
        return result

    def _warm(self, tenant: str, thread_id: str) -> Flow[None]:
        """Copy a thread from the durable store into the hot one, and mark it whole.

        The hot copy is claimed (emptied, under a token of this warm-up's) before the durable
        store is read, so a write committed after that read reaches the hot copy after the
        claim, and the mark is set only if no other warm-up or deletion claimed it since.
        Pending writes stored before their checkpoint are read first: a checkpoint put between
        the two reads is then in the second, and its writes in the first.
        """
        token = uuid.uuid4().hex
        yield _Step(self.hot, ClaimWhole(tenant, thread_id, token, self._timeout_ms))
        early = yield _Step(self.durable, ops.ListEarlyWrites(tenant, thread_id))
        everything = ops.ListCheckpoints(tenant, thread_id, None, None, (), None, None)
        found: list[Checkpoint] = yield _Step(self.durable, everything)
        if not found:
            yield _Step(self.hot, ops.DeleteCheckpointThread(tenant, thread_id))
            return
        newest = max(c.created_at for c in found)
        for c in sorted(found, key=lambda c: (c.namespace, c.checkpoint_id)):
            values = tuple((ch, v, c.values.get(ch)) for ch, v in c.versions.items())
            yield _Step(
                self.hot,
                ops.PutCheckpoint(
                    tenant, thread_id, c.namespace, c.checkpoint_id, c.parent_id, c.body,
                    c.metadata, encode_json(dict(c.metadata), "checkpoint metadata"),
                    c.versions, encode_json(dict(c.versions), "channel versions"), values,
                    c.created_at, None,
                ),
            )  # fmt: skip
            if c.writes:
                yield _Step(
                    self.hot,
                    ops.PutCheckpointWrites(
                        tenant, thread_id, c.namespace, c.checkpoint_id, c.writes, None,
                        c.created_at,
                    ),
                )  # fmt: skip
        for namespace, checkpoint_id, writes in early:
            yield _Step(
                self.hot,
                ops.PutCheckpointWrites(
                    tenant, thread_id, namespace, checkpoint_id, writes, None, newest
                ),
            )
        yield _Step(self.hot, MarkWhole(tenant, thread_id, token))

    # Drivers: the same flows, run sync or awaited.

    def execute(self, op: Op[T]) -> T:
        """Write durable then hot; serve a thread's reads hot when whole; else durable."""
        flow = self._flow(op)
        value: Any = None
        error: MemfoldError | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as done:
                return cast("T", done.value)
            try:
                value, error = step.store.execute(step.op), None
            except MemfoldError as exc:
                value, error = None, exc

    async def aexecute(self, op: Op[T]) -> T:
        """Async `execute`."""
        flow = self._flow(op)
        value: Any = None
        error: MemfoldError | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as done:
                return cast("T", done.value)
            try:
                value, error = await step.store.aexecute(step.op), None
            except MemfoldError as exc:
                value, error = None, exc

    def setup(self) -> int:
        """Set up both stores (an unreachable hot store is only warned about); returns the
        durable store's schema version."""
        version = self.durable.setup()
        try:
            self.hot.setup()
        except BackendUnavailable as error:
            self._hot_failed(error)
        return version

    async def asetup(self) -> int:
        """Async `setup`."""
        version = await self.durable.asetup()
        try:
            await self.hot.asetup()
        except BackendUnavailable as error:
            self._hot_failed(error)
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


def open_tiered(
    url: str,
    options: Mapping[str, Any],
    build: Callable[[str, Mapping[str, Any]], BaseCheckpointStore],
) -> TieredCheckpointStore:
    """The store for ``tiered+redis://host:6379/0?durable=<url-encoded durable URL>``.

    The hot URL keeps the other query options; ``hot_options`` and ``durable_options``
    (dicts) go to each tier's backend, the rest to `TieredCheckpointStore`. ``build`` opens a
    plain URL (`memfold.checkpoints.open_checkpoint_store` passes its own).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    durable = [value for key, value in query if key == "durable"]
    if len(durable) != 1 or parts.scheme != "tiered+redis":
        raise InvalidInput(
            f"a tiered checkpoint URL looks like tiered+redis://host:6379/0?durable=<url-encoded "
            f"postgresql:// or sqlite:// URL>, not {url!r}"
        )
    if urlsplit(durable[0]).scheme.startswith("tiered"):
        raise InvalidInput("the durable store of a tiered URL cannot itself be tiered")
    hot_url = parts._replace(
        scheme="redis", query=urlencode([(k, v) for k, v in query if k != "durable"])
    ).geturl()
    rest = dict(options)
    hot = build(hot_url, dict(rest.pop("hot_options", None) or {}))
    if not isinstance(hot, RedisCheckpointStore):
        raise InvalidInput(f"the hot tier of {url!r} must be redis://")
    return TieredCheckpointStore(
        hot, build(durable[0], dict(rest.pop("durable_options", None) or {})), **rest
    )
