"""The in-process checkpoint store (``memory://``): dicts behind one lock, gone at exit.

Examples:
    >>> from memfold.checkpoints import Blob
    >>> store = MemoryCheckpointStore()
    >>> store.put("t", "c1", Blob("json", b"{}"), versions={"x": 1},
    ...           values={"x": Blob("json", b"7")})
    >>> store.get("t").values["x"]
    Blob(tag='json', data=b'7')
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from memfold import checkpoint_ops as ops
from memfold.backends.memory_journal import MemoryJournal
from memfold.checkpoint_deltas import (
    BlobKey,
    ChainMemo,
    DeltaPolicy,
    StoredBlob,
    channel_key,
    plan_put,
    reachable,
    rebuild,
)
from memfold.checkpoint_history import AncestorWalk, spare_history
from memfold.checkpoint_model import (
    Blob,
    ChannelHistory,
    Checkpoint,
    PendingWrite,
    RetentionPolicy,
    SequenceBlob,
    StorageStats,
    SweepResult,
    Version,
)
from memfold.checkpoints import BaseCheckpointStore, claim_lease, lease_origin, matches_filter
from memfold.errors import Conflict, InvalidInput, NotFound
from memfold.journal import JOURNAL_OPS, RecordEffect
from memfold.model import JSON
from memfold.ops import Op
from memfold.stores import Capabilities
from memfold.tombstones import (
    USER_KEY,
    EraseSubject,
    ErasureCounts,
    FindThreads,
    LiftTombstones,
    TombstoneSet,
)

__all__ = ["MemoryCheckpointStore"]

T = TypeVar("T")


@dataclass(slots=True)
class _Record:
    parent_id: str | None
    created_at: datetime
    metadata: dict[str, JSON]
    metadata_json: str
    body: Blob
    versions: dict[str, Version]
    versions_json: str
    refs: dict[str, str]

    @property
    def size(self) -> int:
        return len(self.body.data) + len(self.metadata_json) + len(self.versions_json)

    def roots(self) -> Iterable[BlobKey]:
        return (channel_key(ch, v, self.refs) for ch, v in self.versions.items())


@dataclass(slots=True)
class _Namespace:
    ids: list[str] = field(default_factory=list)  # ascending
    records: dict[str, _Record] = field(default_factory=dict)
    blobs: dict[BlobKey, StoredBlob] = field(default_factory=dict)
    writes: dict[str, dict[tuple[str, int], PendingWrite]] = field(default_factory=dict)

    def lineage(self) -> dict[str, tuple[str | None, dict[str, JSON]]]:
        """Each checkpoint's parent and metadata (for `spare_history`)."""
        return {cid: (r.parent_id, r.metadata) for cid, r in self.records.items()}

    def copy(self) -> _Namespace:
        return _Namespace(
            list(self.ids),
            dict(self.records),
            dict(self.blobs),
            {cid: dict(w) for cid, w in self.writes.items()},
        )


@dataclass(slots=True)
class _Thread:
    updated_at: datetime
    ttl: float | None = None
    holder: str | None = None
    lease_until: datetime | None = None
    spaces: dict[str, _Namespace] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(s.ids) for s in self.spaces.values())


_REFUSED_WHEN_ERASED = (ops.PutCheckpoint, ops.PutCheckpointWrites, RecordEffect)
"""The writes that could bring an erased thread back."""


@dataclass(slots=True)
class _Removed:
    checkpoints: int = 0
    blobs: int = 0
    writes: int = 0


def _no_blob(_key: BlobKey) -> StoredBlob | None:
    return None


class MemoryCheckpointStore(BaseCheckpointStore):
    """Checkpoints held in dicts, guarded by a lock so background threads can share the store.

    Args:
        delta_policy: when list values are stored whole (see `memfold.checkpoints.DeltaPolicy`).
        retention: what `sweep` removes by default (see `memfold.checkpoints.RetentionPolicy`).
    """

    name = "memory"
    reads_channel_history = True

    def __init__(
        self,
        *,
        delta_policy: DeltaPolicy | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        super().__init__(
            Capabilities(transactions=True, ttl=True, effect_journal=True),
            delta_policy=delta_policy,
            retention=retention,
        )
        self._threads: dict[tuple[str, str], _Thread] = {}
        self._journal = MemoryJournal()
        self._tombstones = TombstoneSet()
        self._lock = threading.Lock()

    def execute(self, op: Op[T]) -> T:
        """Run one operation under the store's lock."""
        with self._lock:
            result: Any = self._run(op)
        return result  # type: ignore[no-any-return]

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation; nothing here waits on I/O, so it never blocks the loop for long."""
        return self.execute(op)

    def _run(self, op: Op[Any]) -> Any:
        if isinstance(op, _REFUSED_WHEN_ERASED):
            self._tombstones.refuse_thread(op.tenant, op.thread_id)
        elif isinstance(op, ops.CopyCheckpointThread):
            self._tombstones.refuse_thread(op.tenant, op.target)
        if isinstance(op, JOURNAL_OPS):
            return self._journal.run(op)
        match op:
            case ops.PutCheckpoint():
                return self._put(op)
            case ops.PutCheckpointWrites():
                return self._put_writes(op)
            case ops.GetCheckpoint(tenant, thread_id, namespace, checkpoint_id):
                return self._get(tenant, thread_id, namespace, checkpoint_id)
            case ops.ListCheckpoints():
                return self._list(op)
            case ops.ReadChannelHistory():
                return self._history(op)
            case ops.ListEarlyWrites(tenant, thread_id):
                return self._early_writes(tenant, thread_id)
            case ops.DeleteCheckpointThread(tenant, thread_id):
                self._journal.drop(tenant, thread_id)
                thread = self._threads.pop((tenant, thread_id), None)
                return 0 if thread is None else thread.count()
            case ops.DeleteCheckpointRuns(tenant, run_ids):
                return self._delete_runs(tenant, set(run_ids))
            case ops.CopyCheckpointThread(tenant, source, target, now):
                return self._copy(tenant, source, target, now)
            case ops.PruneCheckpointThreads(tenant, thread_ids, keep_latest):
                return self._prune(tenant, thread_ids, keep_latest)
            case ops.GetCheckpointThreadTTL(tenant, thread_id):
                thread = self._threads.get((tenant, thread_id))
                return None if thread is None else thread.ttl
            case ops.SetCheckpointThreadTTL(tenant, thread_id, ttl_seconds):
                thread = self._threads.get((tenant, thread_id))
                if thread is not None:
                    thread.ttl = ttl_seconds
                return thread is not None
            case ops.ReleaseThread(tenant, thread_id, writer):
                thread = self._threads.get((tenant, thread_id))
                if thread is None or thread.holder != writer:
                    return False
                thread.holder = thread.lease_until = None
                return True
            case ops.SweepCheckpoints(tenant, policy, now, dry_run):
                return self._sweep(tenant, policy, now, dry_run)
            case ops.CheckpointStats(tenant, thread_id):
                return self._stats(tenant, thread_id)
            case FindThreads(tenant, user_id):
                return sorted(
                    t
                    for (owner, t), thread in self._threads.items()
                    if owner == tenant
                    and any(
                        r.metadata.get(USER_KEY) == user_id
                        for space in thread.spaces.values()
                        for r in space.records.values()
                    )
                )
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._tombstones.lift(op)
        raise InvalidInput(f"the memory checkpoint store cannot run {type(op).__name__}")

    # Writes.

    def _put(self, op: ops.PutCheckpoint) -> None:
        key = (op.tenant, op.thread_id)
        thread = self._threads.get(key)
        space = None if thread is None else thread.spaces.get(op.namespace)
        until = None
        lease = op.lease
        head = space.ids[-1] if space is not None and space.ids else None
        continues = op.parent_id is not None and op.parent_id == head
        origin = lease_origin(op)
        if origin is not None:  # a nested run's first checkpoint: see Lease
            enclosing = None if thread is None else thread.spaces.get(origin[0])
            continues = enclosing is not None and enclosing.ids[-1:] == [origin[1]]
        if lease is not None:
            until = claim_lease(
                op.thread_id,
                None if thread is None else thread.holder,
                None if thread is None else thread.lease_until,
                lease,
                op.created_at,
                continues_head=continues,
            )
        parent = None
        if space is not None and op.parent_id is not None:
            found = space.records.get(op.parent_id)
            parent = None if found is None else (found.versions, found.refs)
        lookup = _no_blob if space is None else space.blobs.get
        rows, refs = plan_put(
            op.checkpoint_id, op.versions, op.new_values, parent, lookup, self.delta_policy
        )
        # Everything is checked: commit.
        if thread is None:
            thread = self._threads[key] = _Thread(op.created_at)
        if space is None:
            space = thread.spaces[op.namespace] = _Namespace()
        for row in rows:
            space.blobs[row.key] = row
        if op.checkpoint_id not in space.records:
            bisect.insort(space.ids, op.checkpoint_id)
        space.records[op.checkpoint_id] = _Record(
            op.parent_id, op.created_at, json.loads(op.metadata_json), op.metadata_json,
            op.body, dict(op.versions), op.versions_json, refs,
        )  # fmt: skip
        self._touch(thread, op.created_at, None if lease is None else lease.writer, until)

    def _put_writes(self, op: ops.PutCheckpointWrites) -> None:
        key = (op.tenant, op.thread_id)
        thread = self._threads.get(key)
        until = None
        writer = None
        space = None if thread is None else thread.spaces.get(op.namespace)
        if op.lease is not None and space is not None and op.checkpoint_id in space.records:
            writer = op.lease.writer  # writes on an unstored checkpoint: see Lease
            until = claim_lease(
                op.thread_id,
                None if thread is None else thread.holder,
                None if thread is None else thread.lease_until,
                op.lease,
                op.written_at,
                continues_head=space.ids[-1] == op.checkpoint_id,
            )
        if thread is None:
            thread = self._threads[key] = _Thread(op.written_at)
        space = thread.spaces.setdefault(op.namespace, _Namespace())
        stored = space.writes.setdefault(op.checkpoint_id, {})
        for write in op.writes:
            slot = (write.task_id, write.idx)
            if write.idx >= 0 and slot in stored and not op.replace:
                continue
            stored[slot] = write
        self._touch(thread, op.written_at, writer, until)

    @staticmethod
    def _touch(thread: _Thread, now: datetime, writer: str | None, until: datetime | None) -> None:
        thread.updated_at = now
        if writer is not None:
            thread.holder, thread.lease_until = writer, until

    # Reads.

    def _checkpoint(
        self,
        thread_id: str,
        namespace: str,
        checkpoint_id: str,
        space: _Namespace,
        memo: ChainMemo | None = None,
    ) -> Checkpoint:
        """One checkpoint rebuilt; ``memo`` shares chains between the checkpoints of a list."""
        record = space.records[checkpoint_id]
        values: dict[str, Blob | SequenceBlob] = {}
        for channel, version in record.versions.items():
            row = space.blobs.get(channel_key(channel, version, record.refs))
            if row is not None:
                value = rebuild(row, space.blobs.get, memo)
                if value is not None:
                    values[channel] = value
        writes = space.writes.get(checkpoint_id, {})
        return Checkpoint(
            thread_id,
            namespace,
            checkpoint_id,
            record.parent_id,
            record.created_at,
            json.loads(record.metadata_json),
            record.body,
            dict(record.versions),
            values,
            tuple(sorted(writes.values(), key=_write_order)),
        )

    def _early_writes(
        self, tenant: str, thread_id: str
    ) -> list[tuple[str, str, tuple[PendingWrite, ...]]]:
        thread = self._threads.get((tenant, thread_id))
        spaces = thread.spaces.items() if thread is not None else ()
        return [
            (namespace, cid, tuple(sorted(writes.values(), key=_write_order)))
            for namespace, space in spaces
            for cid, writes in space.writes.items()
            if cid not in space.records and writes
        ]

    def _get(
        self, tenant: str, thread_id: str, namespace: str, checkpoint_id: str | None
    ) -> Checkpoint | None:
        thread = self._threads.get((tenant, thread_id))
        space = None if thread is None else thread.spaces.get(namespace)
        if space is None or not space.ids:
            return None
        if checkpoint_id is None:
            checkpoint_id = space.ids[-1]
        elif checkpoint_id not in space.records:
            return None
        return self._checkpoint(thread_id, namespace, checkpoint_id, space)

    def _history(self, op: ops.ReadChannelHistory) -> dict[str, ChannelHistory] | None:
        """`ReadChannelHistory`, walking the records' parents (an `AncestorWalk`); None when
        they loop (the paged walk reports it)."""
        thread = self._threads.get((op.tenant, op.thread_id))
        space = None if thread is None else thread.spaces.get(op.namespace)
        start = op.checkpoint_id
        if space is not None and start is None and space.ids:
            start = space.ids[-1]
        if space is None or start not in space.records:
            return {ch: ChannelHistory() for ch in op.channels}
        walk = AncestorWalk(op.thread_id, op.channels, start)
        memo: ChainMemo = {}
        values: dict[str, Blob | SequenceBlob] = {}
        cursor = space.records[start].parent_id
        while cursor is not None and cursor in space.records and not walk.done:
            record = space.records[cursor]
            held: dict[str, Blob | SequenceBlob] = {}
            for channel in walk.remaining.intersection(record.versions):
                row = space.blobs.get(channel_key(channel, record.versions[channel], record.refs))
                if row is not None and (value := rebuild(row, space.blobs.get, memo)) is not None:
                    held[channel] = value
            writes = space.writes.get(cursor, {}).values()
            try:
                ended = walk.visit(cursor, sorted(writes, key=_write_order), held.__contains__)
            except NotFound:
                return None
            values.update((channel, held[channel]) for channel in ended)
            cursor = record.parent_id
        return walk.result(values)

    def _list(self, op: ops.ListCheckpoints) -> list[Checkpoint]:
        if op.thread_id is not None:
            found = self._threads.get((op.tenant, op.thread_id))
            threads = [] if found is None else [(op.thread_id, found)]
        else:
            threads = [(t, th) for (owner, t), th in self._threads.items() if owner == op.tenant]
        hits: list[tuple[str, str, str, _Namespace]] = []
        for thread_id, thread in threads:
            for namespace, space in thread.spaces.items():
                if op.namespace is not None and namespace != op.namespace:
                    continue
                ids: Iterable[str] = space.ids
                if op.checkpoint_id is not None:
                    ids = [op.checkpoint_id] if op.checkpoint_id in space.records else []
                for checkpoint_id in ids:
                    if op.before is not None and checkpoint_id >= op.before:
                        continue
                    if op.filter and not matches_filter(
                        space.records[checkpoint_id].metadata, op.filter
                    ):
                        continue
                    hits.append((checkpoint_id, thread_id, namespace, space))
        hits.sort(key=lambda h: h[0], reverse=True)
        if op.limit is not None:
            hits = hits[: op.limit]
        memos: dict[int, ChainMemo] = {}
        return [
            self._checkpoint(t, ns, cid, space, memos.setdefault(id(space), {}))
            for cid, t, ns, space in hits
        ]

    def _stats(self, tenant: str, thread_id: str | None) -> StorageStats:
        threads = [
            th
            for (owner, t), th in self._threads.items()
            if owner == tenant and (thread_id is None or t == thread_id)
        ]
        spaces = [s for th in threads for s in th.spaces.values()]
        writes = [w for s in spaces for ws in s.writes.values() for w in ws.values()]
        return StorageStats(
            threads=len(threads),
            checkpoints=sum(len(s.records) for s in spaces),
            blobs=sum(len(s.blobs) for s in spaces),
            writes=len(writes),
            checkpoint_bytes=sum(r.size for s in spaces for r in s.records.values()),
            value_bytes=sum(b.size for s in spaces for b in s.blobs.values()),
            write_bytes=sum(len(w.value.data) for w in writes),
        )

    # Deletion and retention.

    def _erase(self, op: EraseSubject) -> ErasureCounts:
        journals = self._journal.threads(op.tenant)
        if op.whole_tenant:
            doomed = {k for k in self._threads if k[0] == op.tenant} | journals
        else:
            doomed = {(op.tenant, t) for t in op.thread_ids}
        stats = [self._stats(*key) for key in doomed if key in self._threads]
        counts = ErasureCounts(
            checkpoint_threads=len(stats),
            checkpoints=sum(s.checkpoints for s in stats),
            checkpoint_writes=sum(s.writes for s in stats),
            checkpoint_blobs=sum(s.blobs for s in stats),
            journal_entries=sum(self._journal.count(*key) for key in doomed),
        )
        if not op.dry_run:
            self._tombstones.place(op.tombstones)
            for key in doomed:
                self._threads.pop(key, None)
                self._journal.drop(*key)
        return counts

    def _drop(self, space: _Namespace, doomed: Iterable[str], removed: _Removed) -> None:
        """Remove checkpoints and their writes, then every row no remaining checkpoint needs."""
        gone = set(doomed) & space.records.keys()
        if not gone:
            return
        for checkpoint_id in gone:
            del space.records[checkpoint_id]
            removed.writes += len(space.writes.pop(checkpoint_id, {}))
        space.ids = [i for i in space.ids if i not in gone]
        removed.checkpoints += len(gone)
        self._collect(space, removed)

    @staticmethod
    def _collect(space: _Namespace, removed: _Removed) -> None:
        """Drop every value row no checkpoint of the namespace reads, directly or in a chain."""
        live = reachable((k for r in space.records.values() for k in r.roots()), space.blobs.get)
        dead = [k for k in space.blobs if k not in live]
        for k in dead:
            del space.blobs[k]
        removed.blobs += len(dead)

    def _tidy(self, key: tuple[str, str]) -> None:
        """Forget a thread once none of its namespaces holds a checkpoint."""
        thread = self._threads.get(key)
        if thread is not None and not any(s.ids for s in thread.spaces.values()):
            del self._threads[key]

    def _each_space(
        self, keys: Iterable[tuple[str, str]], action: Callable[[_Namespace], None]
    ) -> None:
        for key in list(keys):
            thread = self._threads.get(key)
            if thread is None:
                continue
            before = thread.count()
            for space in thread.spaces.values():
                action(space)
            if thread.count() < before:
                self._tidy(key)

    def _delete_runs(self, tenant: str, run_ids: set[str]) -> int:
        removed = _Removed()

        def drop_runs(space: _Namespace) -> None:
            doomed = [
                cid
                for cid, record in space.records.items()
                if isinstance(run := record.metadata.get("run_id"), str) and run in run_ids
            ]
            self._drop(space, doomed, removed)

        if run_ids:
            self._each_space((k for k in self._threads if k[0] == tenant), drop_runs)
        return removed.checkpoints

    def _copy(self, tenant: str, source: str, target: str, now: datetime) -> int:
        found = self._threads.get((tenant, source))
        if found is None or source == target:
            return 0
        existing = self._threads.get((tenant, target))
        if existing is not None and existing.count():
            raise Conflict(
                f"thread {target!r} already has checkpoints: copy into a new thread id, or "
                "delete_thread the target first"
            )
        copied = _Thread(now, spaces={ns: s.copy() for ns, s in found.spaces.items()})
        self._threads[(tenant, target)] = copied
        self._journal.copy(tenant, source, target)
        return copied.count()

    def _prune(self, tenant: str, thread_ids: tuple[str, ...], keep_latest: bool) -> int:
        removed = _Removed()
        keys = [(tenant, t) for t in thread_ids]
        if not keep_latest:
            for key in keys:
                self._journal.drop(*key)
                thread = self._threads.pop(key, None)
                removed.checkpoints += 0 if thread is None else thread.count()
            return removed.checkpoints
        self._each_space(
            keys,
            lambda space: self._drop(
                space, spare_history(set(space.ids[:-1]), space.lineage()), removed
            ),
        )
        return removed.checkpoints

    def _sweep(
        self, tenant: str | None, policy: RetentionPolicy, now: datetime, dry_run: bool
    ) -> ops.CheckpointSweep:
        """Apply ``policy``; a dry run works on copies of the namespaces and deletes nothing."""
        removed = _Removed()
        deleted: list[tuple[str, str]] = []
        keys = [k for k in self._threads if tenant is None or k[0] == tenant]
        for key in keys:
            thread = self._threads[key]
            ttl = thread.ttl if thread.ttl is not None else policy.ttl_seconds
            if ttl is not None and thread.updated_at + timedelta(seconds=ttl) <= now:
                if not dry_run:
                    del self._threads[key]
                    self._journal.drop(*key)
                deleted.append(key)
                removed.checkpoints += thread.count()
                for space in thread.spaces.values():
                    removed.blobs += len(space.blobs)
                    removed.writes += sum(len(w) for w in space.writes.values())
                continue
            for original in thread.spaces.values():
                space = original.copy() if dry_run else original
                doomed: set[str] = set()
                if policy.keep_last is not None:
                    doomed.update(space.ids[: -policy.keep_last])
                if policy.max_age_seconds is not None:
                    cutoff = now - timedelta(seconds=policy.max_age_seconds)
                    doomed.update(
                        cid for cid in space.ids[:-1] if space.records[cid].created_at < cutoff
                    )
                if doomed:
                    doomed = spare_history(doomed, space.lineage())
                self._drop(space, doomed, removed)
                if not doomed:
                    self._collect(space, removed)  # rows left behind by re-put checkpoints
        counts = SweepResult(len(deleted), removed.checkpoints, removed.blobs, removed.writes)
        return ops.CheckpointSweep(counts, tuple(deleted))


def _write_order(write: PendingWrite) -> tuple[str, str, int]:
    """The order a checkpoint's pending writes are read back in."""
    return write.task_path, write.task_id, write.idx
