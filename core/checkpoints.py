"""Checkpoint stores: graph state by ``(tenant, thread, namespace, checkpoint id)``, host-free.

A backend subclasses `BaseCheckpointStore` and implements ``execute(op)`` and ``aexecute(op)``;
validation and the sync and async twins live here. Values are typed bytes from the host's
serializer (`Blob`); a list value may come as a `SequenceBlob`, and then only the items appended
since the parent checkpoint are stored (see `memfold.checkpoint_deltas`).

One writer per thread: ``put`` and ``put_writes`` take a `Lease` naming the writer. While a
writer's lease is live (``Lease.seconds`` after its last write) another writer's write raises
`memfold.errors.Conflict`, unless it continues from the namespace's newest checkpoint, which
hands the lease over (a new process picking up a finished or interrupted run); a nested run's
first checkpoint (no parent) is judged by the enclosing checkpoint it starts from
(``Lease.origin``). Either way two writers can never both extend a thread: whoever writes from
a stale checkpoint is refused, while the lease holder itself may fork from any older
checkpoint (time travel).

Examples:
    >>> from memfold.checkpoints import Blob, SequenceBlob, open_checkpoint_store
    >>> store = open_checkpoint_store("memory://")
    >>> store.put("t1", "c1", Blob("json", b"{}"), versions={"messages": 1},
    ...           values={"messages": SequenceBlob("json", (b'"hi"',))})
    >>> store.put("t1", "c2", Blob("json", b"{}"), parent_id="c1", versions={"messages": 2},
    ...           values={"messages": SequenceBlob("json", (b'"hi"', b'"hello"'))})
    >>> store.get("t1").values["messages"].items
    (b'"hi"', b'"hello"')
    >>> [c.checkpoint_id for c in store.list_checkpoints("t1")]
    ['c2', 'c1']
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from memfold import checkpoint_ops as ops
from memfold.checkpoint_deltas import DeltaPolicy
from memfold.checkpoint_model import (
    Blob,
    ChannelHistory,
    ChannelValue,
    Checkpoint,
    Lease,
    PendingWrite,
    RetentionPolicy,
    SequenceBlob,
    StorageStats,
    SweepResult,
    Version,
)
from memfold.encryption import (
    ENCRYPTED_TAG,
    open_checkpoints,
    seal_blob,
    seal_value,
    seal_write,
    take_keyring,
)
from memfold.errors import Conflict, InvalidInput
from memfold.flows import Call, Flow, arun, run
from memfold.limits import MAX_COUNT, Limits, check_limits
from memfold.model import JSON, utcnow
from memfold.retention import (
    POLICY_OPTIONS,
    Sweepable,
    check_policy,
    check_seconds,
    policy_from_options,
)
from memfold.rotation import Progress, adrive, drive, rotate_checkpoints
from memfold.stores import BaseStore, Capabilities, check_flag, check_id, check_time, encode_json
from memfold.urls import (
    check_url,
    drop_other_kinds,
    flag,
    split_options,
    take_option,
    take_sql_options,
)

__all__ = [
    "BaseCheckpointStore",
    "Blob",
    "ChannelValue",
    "Checkpoint",
    "CheckpointStore",
    "DeltaPolicy",
    "Lease",
    "PendingWrite",
    "PruneStrategy",
    "RetentionPolicy",
    "SequenceBlob",
    "StorageStats",
    "SweepResult",
    "Version",
    "aopen_checkpoint_store",
    "open_checkpoint_store",
    "parent_namespace",
]

T = TypeVar("T")

PruneStrategy = Literal["keep_latest", "delete"]


def check_namespace(value: object) -> str:
    """Return ``value`` if it is a usable checkpoint namespace (``""`` is the root)."""
    if not isinstance(value, str):
        raise InvalidInput(f"checkpoint namespace must be a str, got {type(value).__name__}")
    return check_id(value, "checkpoint namespace") if value else value


def parent_namespace(namespace: str) -> str:
    """The checkpoint namespace that a task's namespace runs in (LangGraph's ``|`` joins the
    levels): ``""`` for ``"tools:1"``, ``"agent:7"`` for ``"agent:7|tools:1"``.

    Raises:
        InvalidInput: ``namespace`` is not a usable namespace.
    """
    return check_namespace(namespace).rpartition("|")[0]


def check_channels(value: object) -> tuple[str, ...]:
    """Channel names given as a list (or set) of strings, each once, in the order given."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | AbstractSet):
        raise InvalidInput(f"channels must be a list of channel names, not {value!r}")
    names = tuple(value)
    if not all(isinstance(name, str) for name in names):
        raise InvalidInput(f"channel names must be strings, got {names!r}")
    return tuple(dict.fromkeys(names))


def _filter_value(key: str, value: JSON) -> str:
    """A list filter's value as JSON text; an int must fit in 64 bits (SQL compares no wider)."""
    if isinstance(value, int) and not -MAX_COUNT - 1 <= value <= MAX_COUNT:
        raise InvalidInput(
            f"filter value for {key!r} must be an int of 64 bits (SQL compares no wider), "
            f"got {value}: compare with a float instead"
        )
    return encode_json(value, f"filter value for {key!r}")


def _check_limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidInput(f"limit must be None or an int from 0 to {MAX_COUNT:,}, got {value!r}")
    return value


def _check_blob(value: object, what: str, limits: Limits) -> Blob:
    if not isinstance(value, Blob):
        raise InvalidInput(f"{what} must be a memfold Blob, got {type(value).__name__}")
    if not isinstance(value.tag, str) or not isinstance(value.data, bytes):
        raise InvalidInput(f"{what} needs a str tag and bytes data")
    check_id(value.tag, f"the type tag of {what}")
    limits.check("max_blob_bytes", what, value.size)
    return value


def _check_value(value: object, channel: str, limits: Limits) -> ChannelValue:
    if value is None:
        return None
    if isinstance(value, SequenceBlob):
        if not isinstance(value.tag, str) or not isinstance(value.items, tuple):
            raise InvalidInput(f"channel {channel!r}: a SequenceBlob needs a str tag and a tuple")
        if not value.items or not all(type(item) is bytes for item in value.items):
            raise InvalidInput(
                f"channel {channel!r}: a SequenceBlob needs one or more bytes items "
                "(store an empty list as a Blob)"
            )
        check_id(value.tag, f"the type tag of channel {channel!r}")
        limits.check("max_blob_bytes", f"the value of channel {channel!r}", value.size)
        return value
    return _check_blob(value, f"the value of channel {channel!r}", limits)


def _check_version(channel: object, version: object) -> None:
    check_id(channel, "channel name")
    if isinstance(version, bool) or not isinstance(version, str | int | float):
        raise InvalidInput(f"channel {channel!r} version must be a str, int or float")
    if isinstance(version, str):
        check_id(version, f"the version of channel {channel!r}")


def _check_write(write: object, limits: Limits) -> PendingWrite:
    if not isinstance(write, PendingWrite):
        raise InvalidInput(f"writes must be memfold PendingWrite, got {type(write).__name__}")
    check_id(write.task_id, "task id")
    idx = write.idx
    if isinstance(idx, bool) or not isinstance(idx, int) or not -(2**31) <= idx < 2**31:
        raise InvalidInput(f"write idx must be a 32-bit int, got {idx!r}")
    check_id(write.channel, "write channel")
    if not isinstance(write.task_path, str) or "\x00" in write.task_path:
        raise InvalidInput("task_path must be a str without NUL characters")
    _check_blob(write.value, f"the value of write {write.channel!r}", limits)
    return write


def _check_lease(lease: object) -> Lease | None:
    if lease is None:
        return None
    if not isinstance(lease, Lease):
        raise InvalidInput(f"lease must be a memfold Lease or None, got {type(lease).__name__}")
    check_id(lease.writer, "lease writer")
    if check_seconds(lease.seconds, "lease seconds") is None:
        raise InvalidInput("a lease needs its seconds: how long the writer's claim lasts")
    if lease.origin is not None:
        if not isinstance(lease.origin, tuple) or len(lease.origin) != 2:
            raise InvalidInput("a lease's origin must be a (namespace, checkpoint_id) pair")
        check_namespace(lease.origin[0])
        check_id(lease.origin[1], "lease origin checkpoint id")
    return lease


def _check_ids(values: object, what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInput(f"{what} must be a sequence of str")
    return tuple(dict.fromkeys(check_id(v, what.rstrip("s")) for v in values))


@runtime_checkable
class CheckpointStore(Sweepable, Protocol):
    """Checkpoints of graph threads, scoped by ``(tenant, thread_id)``, sync and async."""

    @property
    def capabilities(self) -> Capabilities: ...

    def setup(self) -> int: ...
    async def asetup(self) -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...

    def put(
        self,
        thread_id: str,
        checkpoint_id: str,
        body: Blob,
        *,
        namespace: str = "",
        parent_id: str | None = None,
        metadata: Mapping[str, JSON] | None = None,
        versions: Mapping[str, Version] | None = None,
        values: Mapping[str, ChannelValue] | None = None,
        lease: Lease | None = None,
        tenant: str | None = ...,
    ) -> None: ...
    async def aput(
        self,
        thread_id: str,
        checkpoint_id: str,
        body: Blob,
        *,
        namespace: str = "",
        parent_id: str | None = None,
        metadata: Mapping[str, JSON] | None = None,
        versions: Mapping[str, Version] | None = None,
        values: Mapping[str, ChannelValue] | None = None,
        lease: Lease | None = None,
        tenant: str | None = ...,
    ) -> None: ...
    def put_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        namespace: str = "",
        lease: Lease | None = None,
        tenant: str | None = ...,
    ) -> None: ...
    async def aput_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        namespace: str = "",
        lease: Lease | None = None,
        tenant: str | None = ...,
    ) -> None: ...
    def get(
        self,
        thread_id: str,
        *,
        namespace: str = "",
        checkpoint_id: str | None = None,
        tenant: str | None = ...,
    ) -> Checkpoint | None: ...
    async def aget(
        self,
        thread_id: str,
        *,
        namespace: str = "",
        checkpoint_id: str | None = None,
        tenant: str | None = ...,
    ) -> Checkpoint | None: ...
    def list_checkpoints(
        self,
        thread_id: str | None = None,
        *,
        namespace: str | None = None,
        checkpoint_id: str | None = None,
        filter: Mapping[str, JSON] | None = None,
        before: str | None = None,
        limit: int | None = None,
        tenant: str | None = ...,
    ) -> list[Checkpoint]: ...
    async def alist_checkpoints(
        self,
        thread_id: str | None = None,
        *,
        namespace: str | None = None,
        checkpoint_id: str | None = None,
        filter: Mapping[str, JSON] | None = None,
        before: str | None = None,
        limit: int | None = None,
        tenant: str | None = ...,
    ) -> list[Checkpoint]: ...
    def delete_thread(self, thread_id: str, *, tenant: str | None = ...) -> int: ...
    async def adelete_thread(self, thread_id: str, *, tenant: str | None = ...) -> int: ...
    def delete_for_runs(self, run_ids: Sequence[str], *, tenant: str | None = ...) -> int: ...
    async def adelete_for_runs(
        self, run_ids: Sequence[str], *, tenant: str | None = ...
    ) -> int: ...
    def copy_thread(self, source: str, target: str, *, tenant: str | None = ...) -> int: ...
    async def acopy_thread(self, source: str, target: str, *, tenant: str | None = ...) -> int: ...
    def prune(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy = ..., tenant: str | None = ...
    ) -> int: ...
    async def aprune(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy = ..., tenant: str | None = ...
    ) -> int: ...
    def get_thread_ttl(self, thread_id: str, *, tenant: str | None = ...) -> float | None: ...
    async def aget_thread_ttl(
        self, thread_id: str, *, tenant: str | None = ...
    ) -> float | None: ...
    def set_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = ...
    ) -> bool: ...
    async def aset_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = ...
    ) -> bool: ...
    def release(self, thread_id: str, writer: str, *, tenant: str | None = ...) -> bool: ...
    async def arelease(self, thread_id: str, writer: str, *, tenant: str | None = ...) -> bool: ...
    def stats(self, thread_id: str | None = None, *, tenant: str | None = ...) -> StorageStats: ...
    async def astats(
        self, thread_id: str | None = None, *, tenant: str | None = ...
    ) -> StorageStats: ...


class BaseCheckpointStore(BaseStore):
    """The public `CheckpointStore` API, written once over ``execute``/``aexecute``.

    Args:
        capabilities: what the backend can do.
        delta_policy: when list values are stored whole (see `DeltaPolicy`).
        retention: what `sweep` removes when called without a policy.
    """

    reads_channel_history: bool = False
    """Whether the backend runs `memfold.checkpoint_ops.ReadChannelHistory` (every memfold
    backend does)."""

    def __init__(
        self,
        capabilities: Capabilities,
        *,
        delta_policy: DeltaPolicy | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        super().__init__(capabilities)
        self.delta_policy = delta_policy or DeltaPolicy()
        self.retention = _check_policy(retention or RetentionPolicy())

    # Building operations: pure, shared by the sync and async twins.

    def _put_op(
        self,
        thread_id: str,
        checkpoint_id: str,
        body: Blob,
        namespace: str,
        parent_id: str | None,
        metadata: Mapping[str, JSON] | None,
        versions: Mapping[str, Version] | None,
        values: Mapping[str, ChannelValue] | None,
        lease: Lease | None,
        tenant: str | None,
    ) -> ops.PutCheckpoint:
        limits = self.limits
        metadata = {} if metadata is None else metadata
        versions = {} if versions is None else versions
        values = {} if values is None else values
        if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
            raise InvalidInput("checkpoint metadata must be a mapping of str to JSON values")
        if not isinstance(versions, Mapping) or not isinstance(values, Mapping):
            raise InvalidInput("versions and values must be mappings keyed by channel name")
        new_values: list[tuple[str, Version, ChannelValue]] = []
        for channel, value in values.items():
            if channel not in versions:
                raise InvalidInput(
                    f"channel {channel!r} has a value but no version: add it to versions"
                )
            new_values.append((channel, versions[channel], _check_value(value, channel, limits)))
        for channel, version in versions.items():
            _check_version(channel, version)
        run_id = metadata.get("run_id")
        if isinstance(run_id, str) and run_id:
            check_id(run_id, "the run_id in checkpoint metadata")
        body = _check_blob(body, "the checkpoint body", limits)
        if self._keyring is not None:
            body = seal_blob(self._keyring, body)
            new_values = [(ch, v, seal_value(self._keyring, x)) for ch, v, x in new_values]
        return ops.PutCheckpoint(
            self.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            check_namespace(namespace),
            check_id(checkpoint_id, "checkpoint id"),
            None if parent_id is None else check_id(parent_id, "parent checkpoint id"),
            body,
            dict(metadata),
            encode_json(dict(metadata), "checkpoint metadata", limits, "max_metadata_bytes"),
            dict(versions),
            encode_json(dict(versions), "channel versions"),
            tuple(new_values),
            utcnow(),
            _check_lease(lease),
        )

    def _writes_op(
        self,
        thread_id: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        namespace: str,
        lease: Lease | None,
        tenant: str | None,
    ) -> ops.PutCheckpointWrites:
        if isinstance(writes, str | bytes) or not isinstance(writes, Sequence):
            raise InvalidInput("writes must be a sequence of memfold PendingWrite")
        checked = tuple(_check_write(w, self.limits) for w in writes)
        if self._keyring is not None:
            checked = tuple(seal_write(self._keyring, w) for w in checked)
        return ops.PutCheckpointWrites(
            self.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            check_namespace(namespace),
            check_id(checkpoint_id, "checkpoint id"),
            checked,
            _check_lease(lease),
            utcnow(),
        )

    def _get_op(
        self, thread_id: str, namespace: str, checkpoint_id: str | None, tenant: str | None
    ) -> ops.GetCheckpoint:
        return ops.GetCheckpoint(
            self.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            check_namespace(namespace),
            None if checkpoint_id is None else check_id(checkpoint_id, "checkpoint id"),
        )

    def _reads_history(self) -> bool:
        """Whether to read a history in one operation: the backend can, and no keyring seals
        what it would read (the paged walk opens it)."""
        return self.reads_channel_history and self._keyring is None

    def _history_op(
        self,
        thread_id: str,
        channels: Sequence[str],
        namespace: str,
        checkpoint_id: str | None,
        tenant: str | None,
    ) -> ops.ReadChannelHistory:
        names = check_channels(channels)
        get = self._get_op(thread_id, namespace, checkpoint_id, tenant)
        return ops.ReadChannelHistory(
            get.tenant, get.thread_id, get.namespace, get.checkpoint_id, names
        )

    def _list_op(
        self,
        thread_id: str | None,
        namespace: str | None,
        checkpoint_id: str | None,
        filter: Mapping[str, JSON] | None,
        before: str | None,
        limit: int | None,
        tenant: str | None,
    ) -> ops.ListCheckpoints:
        if filter is not None and not isinstance(filter, Mapping):
            raise InvalidInput("filter must be a mapping of metadata keys to JSON values")
        pairs = tuple(
            (check_id(k, "filter key"), _filter_value(k, v)) for k, v in (filter or {}).items()
        )
        return ops.ListCheckpoints(
            self.resolve_tenant(tenant),
            None if thread_id is None else check_id(thread_id, "thread id"),
            None if namespace is None else check_namespace(namespace),
            None if checkpoint_id is None else check_id(checkpoint_id, "checkpoint id"),
            pairs,
            None if before is None else check_id(before, "before"),
            _check_limit(limit),
        )

    def _prune_op(
        self, thread_ids: Sequence[str], strategy: str, tenant: str | None
    ) -> ops.PruneCheckpointThreads:
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInput(
                f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'"
            )
        return ops.PruneCheckpointThreads(
            self.resolve_tenant(tenant),
            _check_ids(thread_ids, "thread ids"),
            strategy == "keep_latest",
        )

    def _ttl_op(
        self, thread_id: str, ttl_seconds: float | None, tenant: str | None
    ) -> ops.SetCheckpointThreadTTL:
        return ops.SetCheckpointThreadTTL(
            self.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            check_seconds(ttl_seconds, "ttl_seconds"),
        )

    def _sweep_op(
        self, policy: RetentionPolicy | None, tenant: str | None, dry_run: bool
    ) -> ops.SweepCheckpoints:
        if not isinstance(dry_run, bool):
            raise InvalidInput(f"dry_run must be a bool, got {dry_run!r}")
        return ops.SweepCheckpoints(
            None if tenant is None and not self.require_tenant else self.resolve_tenant(tenant),
            self.retention if policy is None else _check_policy(policy),
            utcnow(),
            dry_run,
        )

    def _restore_ops(
        self, checkpoint: Checkpoint, tenant: str | None
    ) -> tuple[ops.PutCheckpointWrites | None, ops.PutCheckpoint]:
        """The writes (if any) and the put that store ``checkpoint`` at its own time."""
        if not isinstance(checkpoint, Checkpoint):
            raise InvalidInput(f"restore takes a Checkpoint, got {type(checkpoint).__name__}")
        c = checkpoint
        when = check_time(c.created_at, "a checkpoint's created_at")
        # A read checkpoint holds every value it has: a channel it holds none of has "no
        # value", which a put must be told (left out, it would keep a fork sibling's row).
        values = {**dict.fromkeys(c.versions), **c.values}
        put = self._put_op(
            c.thread_id, c.checkpoint_id, c.body, c.namespace, c.parent_id, c.metadata,
            c.versions, values, None, tenant,
        )  # fmt: skip
        if not c.writes:
            return None, replace(put, created_at=when)
        writes = self._writes_op(c.thread_id, c.checkpoint_id, c.writes, c.namespace, None, tenant)
        return replace(writes, written_at=when), replace(put, created_at=when)

    def _key(self, thread_id: str, tenant: str | None) -> tuple[str, str]:
        return self.resolve_tenant(tenant), check_id(thread_id, "thread id")

    # Sync API.

    def put(
        self,
        thread_id: str,
        checkpoint_id: str,
        body: Blob,
        *,
        namespace: str = "",
        parent_id: str | None = None,
        metadata: Mapping[str, JSON] | None = None,
        versions: Mapping[str, Version] | None = None,
        values: Mapping[str, ChannelValue] | None = None,
        lease: Lease | None = None,
        tenant: str | None = None,
    ) -> None:
        """Store a checkpoint in one transaction.

        ``versions`` holds every channel's version; ``values`` the channels whose version is
        new (a channel left out keeps the row of its version stored earlier, and ``None``
        means "no value"). Storing the same checkpoint id again replaces its record.

        Raises:
            InvalidInput: a bad id, a value without a version, metadata that is not JSON.
            Conflict: another writer holds the thread's lease (see `Lease`).
        """
        op = self._put_op(
            thread_id, checkpoint_id, body, namespace, parent_id, metadata, versions, values,
            lease, tenant,
        )  # fmt: skip
        waited = 0.0
        while True:
            try:
                return self.execute(op)
            except Conflict:
                if not run(self._origin_due(op, waited)):
                    raise
            time.sleep(_ORIGIN_POLL)
            waited += _ORIGIN_POLL

    def put_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        namespace: str = "",
        lease: Lease | None = None,
        tenant: str | None = None,
    ) -> None:
        """Attach pending writes to a checkpoint: a write with ``idx >= 0`` is kept only if
        its ``(task_id, idx)`` is new, a negative ``idx`` replaces.

        Raises:
            Conflict: another writer holds the thread's lease.
        """
        self.execute(self._writes_op(thread_id, checkpoint_id, writes, namespace, lease, tenant))

    def get(
        self,
        thread_id: str,
        *,
        namespace: str = "",
        checkpoint_id: str | None = None,
        tenant: str | None = None,
    ) -> Checkpoint | None:
        """A checkpoint by id, or the namespace's newest; None if there is no such checkpoint."""
        found = self.execute(self._get_op(thread_id, namespace, checkpoint_id, tenant))
        return None if found is None else open_checkpoints(self._keyring, [found])[0]

    def read_channel_history(
        self,
        thread_id: str,
        channels: Sequence[str],
        *,
        namespace: str = "",
        checkpoint_id: str | None = None,
        tenant: str | None = None,
    ) -> dict[str, ChannelHistory] | None:
        """The history of ``channels`` before a checkpoint, read in one operation by a backend
        that can (`reads_channel_history`, and no keyring set); None on other backends, or
        when the read meets what only `memfold.checkpoint_history.channel_history`'s paged
        walk handles (parents that loop, encrypted bytes, a value it cannot rebuild). Use
        that function: it calls this first."""
        op = self._history_op(thread_id, channels, namespace, checkpoint_id, tenant)
        return _plain(self.execute(op)) if self._reads_history() else None

    def list_checkpoints(
        self,
        thread_id: str | None = None,
        *,
        namespace: str | None = None,
        checkpoint_id: str | None = None,
        filter: Mapping[str, JSON] | None = None,
        before: str | None = None,
        limit: int | None = None,
        tenant: str | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints newest first (by id), across threads when ``thread_id`` is None.

        ``filter`` keeps those whose metadata has each key equal to the given JSON value;
        ``before`` keeps ids strictly lower; ``limit`` counts after filtering.
        """
        found = self.execute(
            self._list_op(thread_id, namespace, checkpoint_id, filter, before, limit, tenant)
        )
        return open_checkpoints(self._keyring, found)

    def restore(self, checkpoint: Checkpoint, *, tenant: str | None = None) -> None:
        """Store ``checkpoint`` as another store (or an export) held it: ids, parent, metadata,
        versions, values and pending writes, and its ``created_at`` (so ages, retention and
        the thread's last write carry on from the original). No lease is checked or taken.

        For imports and migrations, oldest checkpoint first so each parent is stored before
        its children; a running graph writes with `put`.
        """
        writes, put = self._restore_ops(checkpoint, tenant)
        if writes is not None:
            self.execute(writes)
        self.execute(put)

    def delete_thread(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Remove a thread's checkpoints (all namespaces), values, writes and lease; returns
        how many checkpoints were removed."""
        return self.execute(ops.DeleteCheckpointThread(*self._key(thread_id, tenant)))

    def delete_for_runs(self, run_ids: Sequence[str], *, tenant: str | None = None) -> int:
        """Remove the checkpoints whose metadata ``run_id`` is one of ``run_ids``, with their
        writes; values other checkpoints still read are kept. Returns checkpoints removed."""
        return self.execute(
            ops.DeleteCheckpointRuns(self.resolve_tenant(tenant), _check_ids(run_ids, "run ids"))
        )

    def copy_thread(self, source: str, target: str, *, tenant: str | None = None) -> int:
        """Copy every checkpoint of ``source`` (ids, parents, values, writes) to ``target``.

        Returns how many checkpoints were copied (0 for an unknown source).

        Raises:
            Conflict: ``target`` already has checkpoints.
        """
        src, dst = self._key(source, tenant)[1], self._key(target, tenant)[1]
        return self.execute(
            ops.CopyCheckpointThread(self.resolve_tenant(tenant), src, dst, utcnow())
        )

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: PruneStrategy = "keep_latest",
        tenant: str | None = None,
    ) -> int:
        """Keep only each namespace's newest checkpoint (and its writes, and the ancestors
        LangGraph's delta channels rebuild it from: see `memfold.checkpoint_history`), or delete
        the threads outright (``strategy="delete"``); returns checkpoints removed."""
        return self.execute(self._prune_op(thread_ids, strategy, tenant))

    def get_thread_ttl(self, thread_id: str, *, tenant: str | None = None) -> float | None:
        """The thread's own TTL in seconds, set by `set_thread_ttl` (None: it has none, or
        there is no such thread; Redis keeps it to the millisecond)."""
        return self.execute(ops.GetCheckpointThreadTTL(*self._key(thread_id, tenant)))

    def set_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = None
    ) -> bool:
        """Let `sweep` delete this thread ``ttl_seconds`` after its last write (None clears
        it); returns whether the thread exists."""
        return self.execute(self._ttl_op(thread_id, ttl_seconds, tenant))

    def release(self, thread_id: str, writer: str, *, tenant: str | None = None) -> bool:
        """End ``writer``'s lease on a thread early; returns whether it held one."""
        tenant, thread_id = self._key(thread_id, tenant)
        return self.execute(ops.ReleaseThread(tenant, thread_id, check_id(writer, "writer")))

    def sweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Apply a retention policy (the store's own by default) to one tenant or all (all
        only if the store does not `require_tenant`), leaving no values or writes that no
        checkpoint needs; returns what was removed. With ``dry_run``, count what would go
        and change nothing."""
        return self.execute(self._sweep_op(policy, tenant, dry_run)).removed

    def stats(self, thread_id: str | None = None, *, tenant: str | None = None) -> StorageStats:
        """Rows and payload bytes of one thread, or of the whole tenant."""
        return self.execute(
            ops.CheckpointStats(
                self.resolve_tenant(tenant),
                None if thread_id is None else check_id(thread_id, "thread id"),
            )
        )

    # Async API: the same operations, awaited.

    async def aput(
        self,
        thread_id: str,
        checkpoint_id: str,
        body: Blob,
        *,
        namespace: str = "",
        parent_id: str | None = None,
        metadata: Mapping[str, JSON] | None = None,
        versions: Mapping[str, Version] | None = None,
        values: Mapping[str, ChannelValue] | None = None,
        lease: Lease | None = None,
        tenant: str | None = None,
    ) -> None:
        """Async `put`."""
        op = self._put_op(
            thread_id, checkpoint_id, body, namespace, parent_id, metadata, versions, values,
            lease, tenant,
        )  # fmt: skip
        waited = 0.0
        while True:
            try:
                return await self.aexecute(op)
            except Conflict:
                if not await arun(self._origin_due(op, waited)):
                    raise
            await asyncio.sleep(_ORIGIN_POLL)
            waited += _ORIGIN_POLL

    def _origin_due(self, op: ops.PutCheckpoint, waited: float) -> Flow[bool]:
        """Whether a refused ``op`` is a nested run's first checkpoint whose origin is not stored
        yet, with time left to wait for it (see `Lease`)."""
        origin = lease_origin(op)
        if origin is None or waited >= _ORIGIN_PATIENCE:
            return False
        where = {"namespace": origin[0], "checkpoint_id": origin[1], "limit": 1}
        found = yield Call(
            self, "list_checkpoints", (op.thread_id,), {**where, "tenant": op.tenant}
        )
        return not found

    async def aput_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        namespace: str = "",
        lease: Lease | None = None,
        tenant: str | None = None,
    ) -> None:
        """Async `put_writes`."""
        await self.aexecute(
            self._writes_op(thread_id, checkpoint_id, writes, namespace, lease, tenant)
        )

    async def aget(
        self,
        thread_id: str,
        *,
        namespace: str = "",
        checkpoint_id: str | None = None,
        tenant: str | None = None,
    ) -> Checkpoint | None:
        """Async `get`."""
        found = await self.aexecute(self._get_op(thread_id, namespace, checkpoint_id, tenant))
        return None if found is None else open_checkpoints(self._keyring, [found])[0]

    async def aread_channel_history(
        self,
        thread_id: str,
        channels: Sequence[str],
        *,
        namespace: str = "",
        checkpoint_id: str | None = None,
        tenant: str | None = None,
    ) -> dict[str, ChannelHistory] | None:
        """Async `read_channel_history`."""
        op = self._history_op(thread_id, channels, namespace, checkpoint_id, tenant)
        return _plain(await self.aexecute(op)) if self._reads_history() else None

    async def alist_checkpoints(
        self,
        thread_id: str | None = None,
        *,
        namespace: str | None = None,
        checkpoint_id: str | None = None,
        filter: Mapping[str, JSON] | None = None,
        before: str | None = None,
        limit: int | None = None,
        tenant: str | None = None,
    ) -> list[Checkpoint]:
        """Async `list_checkpoints`."""
        found = await self.aexecute(
            self._list_op(thread_id, namespace, checkpoint_id, filter, before, limit, tenant)
        )
        return open_checkpoints(self._keyring, found)

    async def arestore(self, checkpoint: Checkpoint, *, tenant: str | None = None) -> None:
        """Async `restore`."""
        writes, put = self._restore_ops(checkpoint, tenant)
        if writes is not None:
            await self.aexecute(writes)
        await self.aexecute(put)

    async def adelete_thread(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Async `delete_thread`."""
        return await self.aexecute(ops.DeleteCheckpointThread(*self._key(thread_id, tenant)))

    async def adelete_for_runs(self, run_ids: Sequence[str], *, tenant: str | None = None) -> int:
        """Async `delete_for_runs`."""
        return await self.aexecute(
            ops.DeleteCheckpointRuns(self.resolve_tenant(tenant), _check_ids(run_ids, "run ids"))
        )

    async def acopy_thread(self, source: str, target: str, *, tenant: str | None = None) -> int:
        """Async `copy_thread`."""
        src, dst = self._key(source, tenant)[1], self._key(target, tenant)[1]
        return await self.aexecute(
            ops.CopyCheckpointThread(self.resolve_tenant(tenant), src, dst, utcnow())
        )

    async def aprune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: PruneStrategy = "keep_latest",
        tenant: str | None = None,
    ) -> int:
        """Async `prune`."""
        return await self.aexecute(self._prune_op(thread_ids, strategy, tenant))

    async def aget_thread_ttl(self, thread_id: str, *, tenant: str | None = None) -> float | None:
        """Async `get_thread_ttl`."""
        return await self.aexecute(ops.GetCheckpointThreadTTL(*self._key(thread_id, tenant)))

    async def aset_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = None
    ) -> bool:
        """Async `set_thread_ttl`."""
        return await self.aexecute(self._ttl_op(thread_id, ttl_seconds, tenant))

    async def arelease(self, thread_id: str, writer: str, *, tenant: str | None = None) -> bool:
        """Async `release`."""
        tenant, thread_id = self._key(thread_id, tenant)
        return await self.aexecute(ops.ReleaseThread(tenant, thread_id, check_id(writer, "writer")))

    async def asweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Async `sweep`."""
        return (await self.aexecute(self._sweep_op(policy, tenant, dry_run))).removed

    async def astats(
        self, thread_id: str | None = None, *, tenant: str | None = None
    ) -> StorageStats:
        """Async `stats`."""
        return await self.aexecute(
            ops.CheckpointStats(
                self.resolve_tenant(tenant),
                None if thread_id is None else check_id(thread_id, "thread id"),
            )
        )

    # Key rotation.

    def rotate_key(self, *, tenant: str | None = None, progress: Progress | None = None) -> int:
        """Re-encrypt the tenant's checkpoints (bodies, values, pending writes) and their
        threads' effect journal entries under the keyring's active key (plain ones too), each
        thread namespace parent first so list values stay deltas; returns how many checkpoints
        were rewritten. Ids, parents, times
        and metadata are kept; rows only the old key could read are swept; a rotated thread
        counts as written now (for its TTL). Idempotent. ``progress(done, total)`` counts
        checkpoints read.

        Raises:
            InvalidInput: the store has no keyring.
            EncryptionError: a checkpoint's key is not in the keyring.
        """
        flow = rotate_checkpoints(self, self.resolve_tenant(tenant), 1, progress)
        return drive(flow, self.execute)

    async def arotate_key(
        self, *, tenant: str | None = None, progress: Progress | None = None
    ) -> int:
        """Async `rotate_key`."""
        flow = rotate_checkpoints(self, self.resolve_tenant(tenant), 1, progress)
        return await adrive(flow, self.aexecute)


def _check_policy(policy: object) -> RetentionPolicy:
    """``policy`` if it is a `RetentionPolicy` a checkpoint store can apply."""
    checked = check_policy(policy)
    if checked.max_threads is not None:
        raise InvalidInput(
            "max_threads is for thread stores: give a checkpoint store keep_last, "
            "max_age_seconds and ttl_seconds (policy.for_kind('checkpoints'))"
        )
    return checked


_MEMORY_OPTIONS: dict[str, Callable[[str], Any]] = {
    "snapshot_every": int,
    "min_growth": float,
    **POLICY_OPTIONS,
}


def _split(url: str, *, strict: bool = False) -> tuple[str, dict[str, Any]]:
    """``url`` without memfold's own query options, and those as backend keyword arguments."""
    plain, parsed = split_options(url, _MEMORY_OPTIONS, strict=strict)
    policy = DeltaPolicy(
        **{k: parsed.pop(k) for k in ("snapshot_every", "min_growth") if k in parsed}
    )
    retention = policy_from_options(parsed).for_kind("checkpoints")
    return plain, {"delta_policy": policy, "retention": retention}


def _build(url: str, options: Mapping[str, Any]) -> BaseCheckpointStore:
    check_url(url)
    url = drop_other_kinds(url, "checkpoints")
    url, rest, require = take_option(url, options, "require_tenant", flag)
    require_tenant = check_flag(require, "require_tenant")
    # Accepted so one URL opens every store kind; a checkpoint's values are a host's bytes,
    # which memfold never reads, so there is nothing to redact.
    url, rest, _ = take_option(url, rest, "redact", str)
    if rest.get("redactor") is not None:
        raise InvalidInput(
            "checkpoint stores cannot redact: their values are a host's serialized bytes, "
            "which memfold never reads. Redact threads and memories; encrypt checkpoints "
            "with keyring="
        )
    rest.pop("redactor", None)
    url, rest, keyring = take_keyring(url, rest)
    store = _backend(url, rest)
    store.require_tenant = require_tenant
    store.keyring = keyring
    return store


def _backend(url: str, options: Mapping[str, Any]) -> BaseCheckpointStore:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from memfold.backends.memory_checkpoints import MemoryCheckpointStore

        return MemoryCheckpointStore(**{**_split(url, strict=True)[1], **options})
    if parts.scheme in ("redis", "rediss", "unix"):
        from memfold.backends.redis.checkpoint_store import RedisCheckpointStore

        plain, ours = _split(url)
        return RedisCheckpointStore.from_url(plain, **{**ours, **options})
    if parts.scheme.startswith("tiered+"):
        from memfold.backends.tiered_checkpoints import open_tiered

        return open_tiered(url, options, _build)
    scheme = parts.scheme.split("+")[0]
    if scheme in ("sqlite", "postgresql", "postgres"):
        from memfold.backends.sql.checkpoint_store import SQLCheckpointStore

        plain, options = take_sql_options(url, options)
        plain, ours = _split(plain)
        return SQLCheckpointStore(plain, **{**ours, **options})
    raise InvalidInput(
        f"unknown checkpoint store URL {url!r}: use memory://, sqlite:///, postgresql://, "
        "redis:// or tiered+redis://host?durable=..."
    )


def open_checkpoint_store(
    url: str = "memory://", *, setup: bool = True, limits: Limits | None = None, **options: Any
) -> BaseCheckpointStore:
    """Open the checkpoint store at ``url`` and (unless ``setup=False``) create its schema.

    ``memory://``, ``sqlite:///path`` and ``postgresql://...`` take ``snapshot_every`` and
    ``min_growth`` (see `DeltaPolicy`) and ``keep_last``, ``max_age_seconds`` and
    ``ttl_seconds`` (see `RetentionPolicy`) as query options, e.g.
    ``memory://?snapshot_every=32&keep_last=100``; keyword ``options`` go to the backend's
    constructor (``schema``, ``table_prefix`` and the driver options for SQL URLs). Every URL
    takes ``require_tenant=true`` (or the keyword ``require_tenant=True``): refuse every call
    that names no ``tenant``; ``keyring=env`` (or ``keyring=Keyring(...)``): encrypt bodies,
    values and pending writes at rest (see `memfold.encryption`). ``limits`` caps the size of
    what the store accepts (`memfold.limits.Limits`; None: the defaults).
    """
    store = _build(url, options)
    store.limits = check_limits(limits)
    if setup:
        store.setup()
    return store


async def aopen_checkpoint_store(
    url: str = "memory://", *, setup: bool = True, limits: Limits | None = None, **options: Any
) -> BaseCheckpointStore:
    """Async `open_checkpoint_store`: the schema is created without blocking the event loop."""
    store = _build(url, options)
    store.limits = check_limits(limits)
    if setup:
        await store.asetup()
    return store


def _plain(found: dict[str, ChannelHistory] | None) -> dict[str, ChannelHistory] | None:
    """``found``, or None if it holds encrypted bytes (the paged walk opens or refuses them)."""
    if found is None:
        return None
    for history in found.values():
        tags = [w.value.tag for w in history.writes]
        if history.seed is not None:
            tags.append(history.seed.tag)
        if any(tag.endswith(ENCRYPTED_TAG) for tag in tags):
            return None
    return found


def _json_equal(stored: JSON | None, wanted_json: str) -> bool:
    """Whether a stored metadata value equals a filter value given as JSON text."""
    wanted = json.loads(wanted_json)
    return _same(stored, wanted)


def _same(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def claim_lease(
    thread_id: str,
    holder: str | None,
    until: datetime | None,
    lease: Lease,
    now: datetime,
    *,
    continues_head: bool,
) -> datetime:
    """Check that ``lease.writer`` may write now; returns the lease's new expiry.

    ``holder``/``until`` describe the thread's current lease; ``continues_head`` says the write
    continues from its namespace's newest checkpoint (a checkpoint whose parent it is, or
    pending writes attached to it): with ``lease.handover`` that takes the lease over.

    Raises:
        Conflict: another writer's lease is live and the write may not take it over.
    """
    taken = holder is not None and holder != lease.writer
    if taken and until is not None and until > now and not (lease.handover and continues_head):
        raise Conflict(
            f"thread {thread_id!r} has another live writer (its lease runs until "
            f"{until.isoformat()}): run one writer per thread, continue from the thread's "
            "newest checkpoint, or wait for the lease to end"
        )
    return now + timedelta(seconds=lease.seconds)


_ORIGIN_PATIENCE: Final = 5.0
"""Seconds a nested run's first checkpoint, refused while its origin is not stored yet, waits
for it (see `Lease`)."""
_ORIGIN_POLL: Final = 0.02
"""Seconds between two tries of such a checkpoint."""


def lease_origin(op: ops.PutCheckpoint) -> tuple[str, str] | None:
    """The checkpoint ``(namespace, checkpoint_id)`` of an enclosing run that ``op`` (a
    nested run's first checkpoint, without a parent) starts from, if its lease names one
    (see `Lease`): the lease is checked against that checkpoint, not ``op``'s own namespace."""
    if op.lease is None or op.lease.origin is None or op.parent_id is not None:
        return None
    namespace, checkpoint_id = op.lease.origin
    return None if namespace == op.namespace else (namespace, checkpoint_id)


def matches_filter(metadata: Mapping[str, JSON], pairs: tuple[tuple[str, str], ...]) -> bool:
    """Whether ``metadata`` has every ``(key, JSON text)`` of a list filter (JSON equality:
    ``true`` does not equal ``1``)."""
    return all(key in metadata and _json_equal(metadata[key], text) for key, text in pairs)
