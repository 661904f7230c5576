"""A LangGraph checkpoint saver backed by a memfold `CheckpointStore`.

The saver only translates: LangGraph's checkpoints, metadata and writes go through the saver's
``serde`` (never pickle; the type tag is kept beside the bytes) and into the store, which owns
the layout (list channels such as ``messages`` stored as their appended items), retention and
the one-writer-per-thread rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import replace
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.base import Checkpoint as LGCheckpoint
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from memfold.checkpoint_deltas import pack_sequence, unpack_sequence
from memfold.checkpoint_history import ChannelHistory, channel_history
from memfold.checkpoints import (
    Blob,
    ChannelValue,
    Checkpoint,
    CheckpointStore,
    Lease,
    PendingWrite,
    PruneStrategy,
    SequenceBlob,
    aopen_checkpoint_store,
    open_checkpoint_store,
    parent_namespace,
)
from memfold.errors import InvalidInput
from memfold.flows import arun, run
from memfold.model import JSON
from memfold.stores import new_id

__all__ = ["MemfoldSaver"]

_NOT_IN_BODY = ("id", "channel_values", "channel_versions")  # the store keeps these


def _configurable(config: object, *, required: bool = True) -> Mapping[str, Any]:
    """``config["configurable"]``, or `InvalidInput` when ``config`` is not a run config (an
    absent one is empty unless ``required``)."""
    if config is None and not required:
        return {}
    conf = config.get("configurable") if isinstance(config, Mapping) else None
    if conf is None and not required and isinstance(config, Mapping):
        return {}
    extra = config.get("metadata") if isinstance(config, Mapping) else None
    if not isinstance(conf, Mapping) or not isinstance(extra, Mapping | None):
        raise InvalidInput(
            "a LangGraph config is a dict with a 'configurable' dict, e.g. "
            f"{{'configurable': {{'thread_id': 't1'}}}}, got {config!r:.200}"
        )
    if not all(isinstance(k, str) for k in (*conf, *(extra or ()))):
        raise InvalidInput("a config's 'configurable' and 'metadata' keys must be str")
    return conf


def _thread(value: object) -> str:
    """A LangGraph thread id (any value, as LangGraph keys threads by its str), or
    `InvalidInput` for None."""
    if value is None:
        raise InvalidInput("the config needs configurable['thread_id']")
    return str(value)


def _threads(thread_ids: object) -> list[str]:
    """LangGraph thread ids (a list, not a str) as memfold's, or `InvalidInput`."""
    if isinstance(thread_ids, str) or not isinstance(thread_ids, Sequence):
        raise InvalidInput(f"thread_ids must be a list, got {type(thread_ids).__name__}")
    return [_thread(t) for t in thread_ids]


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a dict, got {type(value).__name__}")
    return value


class MemfoldSaver(BaseCheckpointSaver[int]):
    """LangGraph checkpoints in a memfold store, with every method real in sync and async form.

    A list channel (``messages``) is handed to the store item by item, so each step stores only
    the messages it appended. One writer per thread: this saver holds a lease on each thread it
    writes (``lease_seconds`` long, renewed by each checkpoint it stores, and by pending writes
    once half of it has run); another saver writing the same thread meanwhile gets
    `memfold.errors.Conflict`, unless it continues from the thread's newest checkpoint
    (``handover``: another process picking up a finished or interrupted run; a subgraph's
    first checkpoint continues from the enclosing graph's checkpoint it runs from), in which
    case this saver's next write from an older checkpoint is refused instead. Time travel and forks
    by this saver always work; `release` ends its lease early, and ``lease_seconds=None`` turns
    leases off.

    Args:
        store: a memfold checkpoint store or its URL (default: a new ``memory://`` store).
        tenant: the tenant every thread of this saver belongs to, fixed here and never read
            from a run's config (None: the store's default tenant, which a store opened with
            ``require_tenant`` refuses).
        serde: LangGraph serializer (default ``JsonPlusSerializer``).
        lease_seconds: how long a thread stays claimed after this saver's last write.
        handover: let another writer take the lease by continuing from the newest checkpoint.
        writer_id: this writer's identity (default: a new random id).

    Examples:
        >>> from langgraph.graph import START, StateGraph
        >>> builder = StateGraph(int)
        >>> _ = builder.add_node("add_one", lambda x: x + 1).add_edge(START, "add_one")
        >>> with MemfoldSaver.from_url("memory://") as saver:
        ...     graph = builder.compile(checkpointer=saver)
        ...     graph.invoke(1, {"configurable": {"thread_id": "t1"}})
        2
    """

    def __init__(
        self,
        store: CheckpointStore | str | None = None,
        *,
        tenant: str | None = None,
        serde: SerializerProtocol | None = None,
        lease_seconds: float | None = 300.0,
        handover: bool = True,
        writer_id: str | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if store is None or isinstance(store, str):
            store = open_checkpoint_store(store or "memory://")
        self.store: CheckpointStore = store
        self.tenant = tenant
        self.writer_id = writer_id or new_id()
        self.lease = (
            None if lease_seconds is None else Lease(self.writer_id, lease_seconds, handover)
        )

    @classmethod
    @contextmanager
    def from_url(cls, url: str = "memory://", **kwargs: Any) -> Iterator[MemfoldSaver]:
        """A saver on the store at ``url``, closed on exit (keywords go to the constructor)."""
        store = open_checkpoint_store(url)
        try:
            yield cls(store, **kwargs)
        finally:
            store.close()

    @classmethod
    @asynccontextmanager
    async def afrom_url(cls, url: str = "memory://", **kwargs: Any) -> AsyncIterator[MemfoldSaver]:
        """Async `from_url`."""
        store = await aopen_checkpoint_store(url)
        try:
            yield cls(store, **kwargs)
        finally:
            await store.aclose()

    # Translation, shared by the sync and async twins.

    def _dumps(self, value: Any) -> tuple[str, bytes]:
        """``serde.dumps_typed(value)``, or `InvalidInput` when the serializer cannot."""
        try:
            return self.serde.dumps_typed(value)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise InvalidInput(f"LangGraph's serializer cannot encode a value: {exc}") from exc

    def _encode(self, value: Any) -> Blob | SequenceBlob:
        if type(value) is list and value:
            typed = [self._dumps(item) for item in value]
            tag = typed[0][0]
            if all(t == tag for t, _ in typed):
                return SequenceBlob(tag, tuple(data for _, data in typed))
        return Blob(*self._dumps(value))

    def _write_value(self, value: Any) -> Blob:
        """A pending write's value: a list item by item (`pack_sequence`), so that a store can
        keep one copy of what the next checkpoint appends to a list channel."""
        encoded = self._encode(value)
        return pack_sequence(encoded) if isinstance(encoded, SequenceBlob) else encoded

    def _decoder(self, *, shared: bool = True) -> Callable[[Blob | SequenceBlob], Any]:
        """A value decoder for one read. ``shared`` (for `list`) decodes each distinct list
        item once: the checkpoints of one `list` call repeat most of their messages, so they
        share one object per message. A list's new items are decoded together (`_load_items`)."""
        loads = self.serde.loads_typed
        framed = type(self.serde) is JsonPlusSerializer
        known: dict[str, dict[bytes, Any]] = {}

        def decode(value: Blob | SequenceBlob) -> Any:
            if isinstance(value, Blob):
                return loads((value.tag, value.data))
            if not shared:  # one checkpoint: nothing to share, so no need to hash the items
                return _load_items(loads, value.tag, list(value.items), framed)
            items = known.get(value.tag)
            if items is None:
                items = known[value.tag] = {}
            try:
                return list(map(items.__getitem__, value.items))
            except KeyError:  # items not decoded yet: decode them all at once
                new = [data for data in dict.fromkeys(value.items) if data not in items]
                items.update(zip(new, _load_items(loads, value.tag, new, framed), strict=True))
                return list(map(items.__getitem__, value.items))

        return decode

    def _put_args(
        self,
        config: RunnableConfig,
        checkpoint: LGCheckpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> dict[str, Any]:
        conf = _configurable(config)
        checkpoint = cast(LGCheckpoint, _mapping(checkpoint, "checkpoint"))
        versions = _mapping(checkpoint.get("channel_versions"), "checkpoint['channel_versions']")
        present = _mapping(checkpoint.get("channel_values"), "checkpoint['channel_values']")
        changed = _mapping(new_versions, "new_versions")
        metadata = cast(CheckpointMetadata, _mapping(metadata, "metadata"))
        values: dict[str, ChannelValue] = {
            ch: self._encode(present[ch]) if ch in present else None
            for ch in changed
            if ch in versions
        }
        body = {k: v for k, v in checkpoint.items() if k not in _NOT_IN_BODY}
        namespace = conf.get("checkpoint_ns", "")
        lease = self.lease
        if lease is not None and namespace and conf.get("checkpoint_id") is None:
            # A subgraph's first checkpoint: the lease is checked against the checkpoint of
            # the enclosing graph that it starts from (see memfold.checkpoints.Lease).
            enclosing = parent_namespace(namespace)
            origins = conf.get("checkpoint_map")  # LangGraph's: namespace -> checkpoint id
            origin = origins.get(enclosing) if isinstance(origins, Mapping) else None
            if isinstance(origin, str):
                lease = replace(lease, origin=(enclosing, origin))
        return {
            "thread_id": _thread(conf.get("thread_id")),
            "checkpoint_id": checkpoint.get("id"),
            "body": Blob(*self._dumps(body)),
            "namespace": namespace,
            "parent_id": conf.get("checkpoint_id"),
            "metadata": cast(Mapping[str, JSON], get_checkpoint_metadata(config, metadata)),
            "versions": versions,
            "values": values,
            "lease": lease,
            "tenant": self.tenant,
        }

    def _writes_args(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, path: str
    ) -> dict[str, Any]:
        conf = _configurable(config)
        if isinstance(writes, str) or not isinstance(writes, Sequence):
            raise InvalidInput(f"writes must be a list of (channel, value), got {writes!r:.100}")
        if not all(isinstance(w, tuple | list) and len(w) == 2 and isinstance(w[0], str)
                   for w in writes):  # fmt: skip
            raise InvalidInput("each write must be a (str channel, value) pair")
        return {
            "thread_id": _thread(conf.get("thread_id")),
            "checkpoint_id": conf.get("checkpoint_id"),
            "writes": [
                PendingWrite(task_id, WRITES_IDX_MAP.get(ch, i), ch, self._write_value(v), path)
                for i, (ch, v) in enumerate(writes)
            ],
            "namespace": conf.get("checkpoint_ns", ""),
            "lease": self.lease,
            "tenant": self.tenant,
        }

    def _get_args(self, config: RunnableConfig) -> dict[str, Any]:
        conf = _configurable(config)
        return {
            "thread_id": _thread(conf.get("thread_id")),
            "namespace": conf.get("checkpoint_ns", ""),
            "checkpoint_id": get_checkpoint_id(config),
            "tenant": self.tenant,
        }

    def _list_args(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> dict[str, Any]:
        conf = _configurable(config, required=False)
        if before is not None:
            _configurable(before)
        return {
            "thread_id": None if conf.get("thread_id") is None else str(conf["thread_id"]),
            "namespace": conf.get("checkpoint_ns"),
            "checkpoint_id": conf.get("checkpoint_id"),
            "filter": filter,
            "before": None if before is None else get_checkpoint_id(before),
            "limit": limit,
            "tenant": self.tenant,
        }

    def _tuple(
        self, stored: Checkpoint, decode: Callable[[Blob | SequenceBlob], Any]
    ) -> CheckpointTuple:
        def config(checkpoint_id: str) -> RunnableConfig:
            return {
                "configurable": {
                    "thread_id": stored.thread_id,
                    "checkpoint_ns": stored.namespace,
                    "checkpoint_id": checkpoint_id,
                }
            }

        body = self.serde.loads_typed((stored.body.tag, stored.body.data))
        body["id"] = stored.checkpoint_id
        body["channel_versions"] = dict(stored.versions)
        body["channel_values"] = {ch: decode(v) for ch, v in stored.values.items()}
        return CheckpointTuple(
            config(stored.checkpoint_id),
            body,
            cast(CheckpointMetadata, stored.metadata),
            None if stored.parent_id is None else config(stored.parent_id),
            [_pending(w, decode) for w in stored.writes],
        )

    def _histories(self, found: Mapping[str, ChannelHistory]) -> dict[str, Any]:
        """`channel_history`'s result as LangGraph's ``DeltaChannelHistory`` entries."""
        decode = self._decoder(shared=False)
        out: dict[str, Any] = {}
        for channel, history in found.items():
            entry: dict[str, Any] = {"writes": [_pending(w, decode) for w in history.writes]}
            if history.seed is not None:
                entry["seed"] = decode(history.seed)
            out[channel] = entry
        return out

    # Sync API.

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (its newest when no ``checkpoint_id``), or None."""
        stored = self.store.get(**self._get_args(config))
        return None if stored is None else self._tuple(stored, self._decoder(shared=False))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, filtered by metadata equality, ``before`` and ``limit``.

        A message that several listed checkpoints hold is decoded once and shared by them.
        """
        decode = self._decoder()
        for stored in self.store.list_checkpoints(**self._list_args(config, filter, before, limit)):
            yield self._tuple(stored, decode)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: LGCheckpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (values of changed channels only); returns its config."""
        args = self._put_args(config, checkpoint, metadata, new_versions)
        self.store.put(**args)
        return _saved(config, args)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes on the checkpoint in ``config``."""
        self.store.put_writes(**self._writes_args(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Remove every checkpoint and write of a thread."""
        self.store.delete_thread(_thread(thread_id), tenant=self.tenant)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove the checkpoints and writes made by the given runs."""
        self.store.delete_for_runs(run_ids, tenant=self.tenant)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread's whole history (same checkpoint ids) to a new thread."""
        self.store.copy_thread(
            _thread(source_thread_id), _thread(target_thread_id), tenant=self.tenant
        )

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """For LangGraph's delta channels: each channel's pending writes along the ancestors of
        the checkpoint, oldest first, and the nearest stored value (``seed``), read in one store
        operation per page of ancestors rather than one ``get_tuple`` per ancestor (see
        `memfold.checkpoint_history`)."""
        found = run(channel_history(self.store, channels=channels, **self._get_args(config)))
        return self._histories(found)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each namespace's newest checkpoint, or delete (``strategy="delete"``).
        A graph on LangGraph's delta channel also keeps the ancestors the channel is rebuilt
        from (where ``PostgresSaver`` refuses to prune it)."""
        threads = _threads(thread_ids)
        self.store.prune(threads, strategy=cast(PruneStrategy, strategy), tenant=self.tenant)

    def release(self, thread_id: str) -> bool:
        """End this saver's lease on a thread now, so another writer may fork it at once."""
        return self.store.release(_thread(thread_id), self.writer_id, tenant=self.tenant)

    # Async API: the same translation over the store's async methods.

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async `get_tuple`."""
        stored = await self.store.aget(**self._get_args(config))
        return None if stored is None else self._tuple(stored, self._decoder(shared=False))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """Async `get_delta_channel_history`."""
        flow = channel_history(self.store, channels=channels, **self._get_args(config))
        return self._histories(await arun(flow))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async `list`."""
        args, decode = self._list_args(config, filter, before, limit), self._decoder()
        for stored in await self.store.alist_checkpoints(**args):
            yield self._tuple(stored, decode)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: LGCheckpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async `put`."""
        args = self._put_args(config, checkpoint, metadata, new_versions)
        await self.store.aput(**args)
        return _saved(config, args)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async `put_writes`."""
        await self.store.aput_writes(**self._writes_args(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """Async `delete_thread`."""
        await self.store.adelete_thread(_thread(thread_id), tenant=self.tenant)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async `delete_for_runs`."""
        await self.store.adelete_for_runs(run_ids, tenant=self.tenant)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async `copy_thread`."""
        await self.store.acopy_thread(
            _thread(source_thread_id), _thread(target_thread_id), tenant=self.tenant
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async `prune`."""
        threads = _threads(thread_ids)
        await self.store.aprune(threads, strategy=cast(PruneStrategy, strategy), tenant=self.tenant)

    async def arelease(self, thread_id: str) -> bool:
        """Async `release`."""
        return await self.store.arelease(_thread(thread_id), self.writer_id, tenant=self.tenant)


def _load_items(
    loads: Callable[[tuple[str, bytes]], Any], tag: str, items: list[bytes], framed: bool
) -> list[Any]:
    """Decode list items. With ``framed`` (LangGraph's ``JsonPlusSerializer``), ``msgpack``
    items are decoded in one call as the msgpack array they make together (an array header
    before the items: the same objects, as each item is one msgpack value), and one by one if
    that fails, so that a bad item raises as it would alone."""
    if framed and tag == "msgpack" and len(items) > 1:
        count = len(items)
        if count < 16:
            header = bytes((0x90 | count,))
        else:
            header = b"\xdc" + count.to_bytes(2) if count < 1 << 16 else b"\xdd" + count.to_bytes(4)
        with suppress(Exception):
            values = loads((tag, header + b"".join(items)))
            if type(values) is list and len(values) == count:
                return values
    return [loads((tag, data)) for data in items]


def _pending(
    write: PendingWrite, decode: Callable[[Blob | SequenceBlob], Any]
) -> tuple[str, str, Any]:
    """A stored pending write as LangGraph's ``(task_id, channel, value)``."""
    return write.task_id, write.channel, decode(unpack_sequence(write.value) or write.value)


def _saved(config: RunnableConfig, args: Mapping[str, Any]) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": config["configurable"]["thread_id"],
            "checkpoint_ns": args["namespace"],
            "checkpoint_id": args["checkpoint_id"],
        }
    }
