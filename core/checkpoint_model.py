"""The host-free checkpoint model: graph state as typed bytes, plain frozen dataclasses.

A checkpoint holds an opaque ``body`` (the host's own record, serialized by the host), JSON
``metadata``, the channel ``versions``, the channel ``values`` as typed bytes, and the pending
``writes`` made from it. memfold never deserializes a value: the host's serializer gave each
one a type tag, and the tag is stored beside the bytes.

A list value may be handed over as a `SequenceBlob` (one blob per item, all with one tag), so
that a store can keep only what was appended since the previous version.

Examples:
    >>> from memfold.checkpoint_model import Blob, SequenceBlob
    >>> Blob("msgpack", b"\\x01").size
    1
    >>> SequenceBlob("msgpack", (b"ab", b"c")).size
    3
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from memfold.model import JSON
from memfold.retention import RetentionPolicy, SweepResult

__all__ = [
    "Blob",
    "ChannelHistory",
    "ChannelValue",
    "Checkpoint",
    "Lease",
    "PendingWrite",
    "RetentionPolicy",
    "SequenceBlob",
    "StorageStats",
    "SweepResult",
    "Version",
]

Version: TypeAlias = str | int | float
"""A channel version as the host gives it; versions of one channel increase."""


@dataclass(frozen=True, slots=True)
class Blob:
    """One serialized value: the serializer's type tag and its bytes."""

    tag: str
    data: bytes

    @property
    def size(self) -> int:
        """How many payload bytes the blob holds."""
        return len(self.data)


@dataclass(frozen=True, slots=True)
class SequenceBlob:
    """A list value serialized item by item: one tag, one ``bytes`` per item, in order."""

    tag: str
    items: tuple[bytes, ...]

    @property
    def size(self) -> int:
        """How many payload bytes the items hold together."""
        return sum(map(len, self.items))


ChannelValue: TypeAlias = Blob | SequenceBlob | None
"""A channel's value; ``None`` means the channel has a version but no value."""


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """A write a task made from a checkpoint, not yet folded into a newer checkpoint.

    ``idx`` is the write's position in its task's list, or a negative number for a special
    channel (errors, interrupts, resumes): a write with ``idx >= 0`` is stored only if its
    ``(task_id, idx)`` is new, a negative one replaces the stored write.
    """

    task_id: str
    idx: int
    channel: str
    value: Blob
    task_path: str = ""


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """One channel's pending writes along a checkpoint's ancestors, oldest first (each
    checkpoint's in its stored order), and the value of the nearest ancestor that stores one
    (None: no ancestor does, so the channel starts empty); see `memfold.checkpoint_history`."""

    writes: tuple[PendingWrite, ...] = ()
    seed: Blob | SequenceBlob | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One stored checkpoint with its values rebuilt and its pending writes.

    ``values`` holds the channels of ``versions`` that have a value; ``writes`` is sorted by
    ``(task_path, task_id, idx)``.
    """

    thread_id: str
    namespace: str
    checkpoint_id: str
    parent_id: str | None
    created_at: datetime
    metadata: Mapping[str, JSON]
    body: Blob
    versions: Mapping[str, Version]
    values: Mapping[str, Blob | SequenceBlob] = field(default_factory=dict)
    writes: tuple[PendingWrite, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """Who is writing, and for how long their claim on a thread lasts: ``seconds`` after each
    checkpoint put, and at least half of that after pending writes.

    A thread has at most one writer at a time. A write by another writer while the lease is
    live raises `memfold.errors.Conflict`, except (with ``handover``) a write that continues
    from its namespace's newest checkpoint (a checkpoint whose parent that is, or pending
    writes on it, as when resuming an interrupt): that writer read the latest state, so it
    takes the lease over, and the previous holder's next write from an older checkpoint is
    refused instead. The holder itself may always write, forks included.

    Pending writes on a checkpoint that is not stored yet are accepted without checking or
    touching the lease: LangGraph stores a step's writes and its checkpoint concurrently, and
    the checkpoint's own ``put`` is what the lease checks (the writes of a refused ``put`` are
    never read, and go with the thread when it is deleted).

    A nested run (a LangGraph subgraph) starts its own namespace with a checkpoint that has
    no parent; ``origin`` names the checkpoint ``(namespace, checkpoint_id)`` of the enclosing
    run it starts from (`memfold.integrations.langgraph.MemfoldSaver` sets it from LangGraph's
    ``checkpoint_map``). Such a first checkpoint continues from the newest checkpoint when
    ``origin`` is its namespace's newest, so it takes the lease over like a child of that
    checkpoint would; otherwise (``origin`` older, or not stored yet), or without ``origin``,
    it is checked as a write that does not continue. Refused while ``origin`` is not stored
    yet, it is tried again for up to 5 seconds: LangGraph stores the enclosing checkpoint in the
    background while the subgraph runs. ``origin`` is
    ignored for a checkpoint that has a parent.
    """

    writer: str
    seconds: float
    handover: bool = True
    origin: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class StorageStats:
    """Rows and payload bytes held, for one thread or a whole tenant.

    Bytes count payloads only (bodies, metadata and versions JSON, values, writes), not keys
    or a backend's own overhead.
    """

    threads: int = 0
    checkpoints: int = 0
    blobs: int = 0
    writes: int = 0
    checkpoint_bytes: int = 0
    value_bytes: int = 0
    write_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        """All payload bytes together."""
        return self.checkpoint_bytes + self.value_bytes + self.write_bytes
