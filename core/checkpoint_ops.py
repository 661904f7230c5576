"""Checkpoint store operations as data.

`memfold.checkpoints.BaseCheckpointStore` validates its arguments, builds one of these frozen
operations and hands it to the backend's ``execute`` (sync) or ``aexecute`` (async); backends
implement only those two entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from memfold.checkpoint_model import (
    Blob,
    ChannelHistory,
    ChannelValue,
    Checkpoint,
    Lease,
    PendingWrite,
    RetentionPolicy,
    StorageStats,
    SweepResult,
    Version,
)
from memfold.model import JSON
from memfold.ops import Op

__all__ = [
    "HISTORY_PAGES",
    "CheckpointStats",
    "CheckpointSweep",
    "CopyCheckpointThread",
    "DeleteCheckpointRuns",
    "DeleteCheckpointThread",
    "GetCheckpoint",
    "GetCheckpointThreadTTL",
    "ListCheckpoints",
    "ListEarlyWrites",
    "PruneCheckpointThreads",
    "PutCheckpoint",
    "PutCheckpointWrites",
    "ReadChannelHistory",
    "ReleaseThread",
    "SetCheckpointThreadTTL",
    "SweepCheckpoints",
]


@dataclass(frozen=True, slots=True)
class PutCheckpoint(Op[None]):
    """Store a checkpoint and the values of the channels in ``new_values``.

    ``new_values`` holds ``(channel, version, value)`` for each channel with a new version;
    ``metadata_json`` is ``metadata`` as compact JSON text (already validated).
    """

    tenant: str
    thread_id: str
    namespace: str
    checkpoint_id: str
    parent_id: str | None
    body: Blob
    metadata: Mapping[str, JSON]
    metadata_json: str
    versions: Mapping[str, Version]
    versions_json: str
    new_values: tuple[tuple[str, Version, ChannelValue], ...]
    created_at: datetime
    lease: Lease | None


@dataclass(frozen=True, slots=True)
class PutCheckpointWrites(Op[None]):
    """Attach pending writes to a checkpoint (which need not be stored yet).

    With ``replace`` every write overwrites the one stored under its ``(task_id, idx)`` (key
    rotation re-encrypts writes so); otherwise only writes with a negative ``idx`` do.
    """

    tenant: str
    thread_id: str
    namespace: str
    checkpoint_id: str
    writes: tuple[PendingWrite, ...]
    lease: Lease | None
    written_at: datetime
    replace: bool = False


@dataclass(frozen=True, slots=True)
class GetCheckpoint(Op[Checkpoint | None]):
    """One checkpoint by id, or the newest of its namespace when ``checkpoint_id`` is None."""

    tenant: str
    thread_id: str
    namespace: str
    checkpoint_id: str | None


@dataclass(frozen=True, slots=True)
class ListCheckpoints(Op[list[Checkpoint]]):
    """Checkpoints newest first; every given field narrows the result.

    ``filter`` holds ``(key, JSON text)`` pairs: top-level metadata keys compared for equality.
    """

    tenant: str
    thread_id: str | None
    namespace: str | None
    checkpoint_id: str | None
    filter: tuple[tuple[str, str], ...]
    before: str | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class ListEarlyWrites(Op[list[tuple[str, str, tuple[PendingWrite, ...]]]]):
    """A thread's pending writes whose checkpoint is not stored (yet), as ``(namespace,
    checkpoint id, writes)``: LangGraph may store a step's writes before the checkpoint they
    belong to, and a copy of the thread (a tiered store's warm-up) must carry them too."""

    tenant: str
    thread_id: str


HISTORY_PAGES = (32, 128, 512, 2048)
"""How many ancestors each successive read of a `ReadChannelHistory` takes (the last repeats)."""


@dataclass(frozen=True, slots=True)
class ReadChannelHistory(Op[dict[str, ChannelHistory] | None]):
    """The history of ``channels`` before a checkpoint (the namespace's newest when
    ``checkpoint_id`` is None), as `memfold.checkpoint_history.channel_history` defines it;
    None when the read meets what only that function's paged walk handles."""

    tenant: str
    thread_id: str
    namespace: str
    checkpoint_id: str | None
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeleteCheckpointThread(Op[int]):
    """Remove a thread's checkpoints, values, writes and lease; returns checkpoints removed."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class DeleteCheckpointRuns(Op[int]):
    """Remove the checkpoints whose metadata ``run_id`` is listed; returns how many."""

    tenant: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CopyCheckpointThread(Op[int]):
    """Copy every checkpoint, value and write of a thread, ids kept; returns checkpoints copied."""

    tenant: str
    source: str
    target: str
    now: datetime


@dataclass(frozen=True, slots=True)
class PruneCheckpointThreads(Op[int]):
    """Keep only each namespace's newest checkpoint, or (``keep_latest=False``) delete all."""

    tenant: str
    thread_ids: tuple[str, ...]
    keep_latest: bool


@dataclass(frozen=True, slots=True)
class GetCheckpointThreadTTL(Op[float | None]):
    """A thread's own time to live in seconds (None: it has none, or there is no thread)."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class SetCheckpointThreadTTL(Op[bool]):
    """Set or clear a thread's own time to live; returns whether the thread exists."""

    tenant: str
    thread_id: str
    ttl_seconds: float | None


@dataclass(frozen=True, slots=True)
class ReleaseThread(Op[bool]):
    """End ``writer``'s lease on a thread; returns whether it held one."""

    tenant: str
    thread_id: str
    writer: str


@dataclass(frozen=True, slots=True)
class CheckpointSweep:
    """What a checkpoint sweep removed, and the ``(tenant, thread_id)`` of every thread it
    deleted whole (a tiered store drops those from its hot tier)."""

    removed: SweepResult
    deleted: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SweepCheckpoints(Op[CheckpointSweep]):
    """Apply a retention policy to one tenant, or to all when ``tenant`` is None; with
    ``dry_run``, only count."""

    tenant: str | None
    policy: RetentionPolicy
    now: datetime
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class CheckpointStats(Op[StorageStats]):
    """Count rows and payload bytes of one thread, or of a tenant when ``thread_id`` is None."""

    tenant: str
    thread_id: str | None
