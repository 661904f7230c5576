"""The Chroma memory store: ``chroma:///path`` (embedded) or ``chroma+http://host:port``.

Each operation is written once as a generator that yields the collection calls it needs
(`Call`: a method name and its arguments) and gets their results back; a sync driver runs it on
a ``Collection`` and an async one on an ``AsyncCollection`` (chromadb's ``AsyncHttpClient``).
chromadb has no async in-process client (chroma#2200), so for an embedded store the async API
runs each operation in a worker thread (``asyncio.to_thread``): the event loop never blocks.

Chroma ranks vectors (HNSW, cosine) and filters metadata; memfold adds what it lacks: the words
of each record are stored as a ``_terms`` list, Chroma's ``$contains`` finds the records holding
a query term, and BM25 is computed here (`memfold.recall.text.bm25`), as on every backend. Filters
are pushed down where Chroma can express them, and the core's predicate decides
(`memfold.backends.chroma.mapping`). Chroma has no transactions: a write of many records is
several calls, so ``capabilities.transactions`` is False. Tombstones of erased tenants and users
live in a collection of their own, checked before and after every put
(`memfold.backends.chroma.tombstones`).

Examples:
    >>> import tempfile
    >>> store = ChromaMemoryStore(f"chroma://{tempfile.mkdtemp()}", dimensions=2)
    >>> store.setup()
    1
    >>> _ = store.put(("t", "u"), "north star", embedding=[0.0, 1.0])
    >>> _ = store.put(("t", "u"), "east wind", embedding=[1.0, 0.0])
    >>> [h.record.text for h in store.search(("t",), vector=[0.1, 0.9], k=1)]
    ['north star']
    >>> [h.record.text for h in store.search(("t",), "wind", k=1, vector_weight=0)]
    ['east wind']
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit

import chromadb
import numpy as np
from chromadb.api import AsyncClientAPI, ClientAPI
from chromadb.api.models.AsyncCollection import AsyncCollection
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import ChromaError, InvalidArgumentError, NotFoundError

from memfold import memory_ops as ops
from memfold.backends.chroma import mapping as m
from memfold.backends.chroma import tombstones as stones
from memfold.errors import BackendUnavailable, InvalidInput, MemfoldError
from memfold.memories import BaseMemoryStore, expiry, namespace_key, namespace_page, rank_hits
from memfold.memory_model import MemoryHit, MemoryRecord, Namespace
from memfold.ops import Op
from memfold.recall.embedders import Embedder
from memfold.recall.filters import Filter
from memfold.recall.text import bm25
from memfold.recall.vectors import Matrix
from memfold.retention import RetentionPolicy
from memfold.schema_steps import SchemaStatus, SchemaSteps, Step
from memfold.stores import Capabilities, encode_json
from memfold.tombstones import (
    EraseSubject,
    ErasureCounts,
    LiftTombstones,
    lifted,
    namespace_erased,
)
from memfold.urls import check_url

__all__ = ["ChromaMemoryStore"]

T = TypeVar("T")

LAYOUT_STEPS: Final = (
    Step(1, "one item per record: its words, namespace, times and value in the metadata"),
)
"""The steps of the item layout in `memfold.backends.chroma.mapping`; the collection's metadata
records the last (``memfold_layout``)."""
LAYOUT_VERSION: Final = LAYOUT_STEPS[-1].version

DEFAULT_COLLECTION: Final = "memfold_memories"


@dataclass(frozen=True, slots=True)
class Call:
    """One collection method call: ``method`` (get, query, upsert, update, delete) and its
    keyword arguments, on the records' collection or, with ``tombstones``, on the tombstones'."""

    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    tombstones: bool = False


Flow: TypeAlias = Generator[Call, Any, T]
"""An operation as the collection calls it makes; each call's result is sent back in."""

_ALL: Final = ["metadatas", "documents"]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _live(meta: dict[str, Any], now: datetime) -> bool:
    return int(meta["_exp"]) > m.micros(now)


def _rows(result: dict[str, Any], fields: Iterable[str]) -> list[tuple[Any, ...]]:
    """``(id, field...)`` per item of a ``get`` result (None for fields not included)."""
    ids = result["ids"]
    columns = [result.get(f) if result.get(f) is not None else [None] * len(ids) for f in fields]
    return list(zip(ids, *columns, strict=True))


def parse_url(url: str) -> tuple[str | None, str | None, int | None]:
    """``(path, host, port)`` of a ``chroma://path``, ``chroma:///abs/path`` or
    ``chroma+http://host:port`` URL.

    Examples:
        >>> parse_url("chroma:///var/lib/mem"), parse_url("chroma+http://127.0.0.1:8000")
        (('/var/lib/mem', None, None), (None, '127.0.0.1', 8000))
    """
    parts = urlsplit(url)
    if parts.scheme == "chroma":
        path = parts.netloc + parts.path
        if not path:
            raise InvalidInput(f"{url!r} names no directory: use chroma:///path/to/dir")
        return path, None, None
    if parts.scheme == "chroma+http":
        if not parts.hostname:
            raise InvalidInput(f"{url!r} names no host: use chroma+http://host:8000")
        return None, parts.hostname, parts.port or 8000
    raise InvalidInput(f"a Chroma URL is chroma:///path or chroma+http://host:port, not {url!r}")


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """chromadb and connection errors as `memfold.errors`."""
    try:
        yield
    except MemfoldError:
        raise
    except InvalidArgumentError as exc:
        raise InvalidInput(f"Chroma at {where} refused the request: {exc}") from exc
    except (ChromaError, ValueError, OSError, ConnectionError) as exc:
        raise BackendUnavailable(
            f"cannot use Chroma at {where}: check that the server runs (`chroma run --path DIR "
            f"--port N`) or that the directory is writable. Chroma said: {exc}"
        ) from exc
    except Exception as exc:  # httpx transport errors carry no common chromadb base class
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise BackendUnavailable(
                f"cannot reach Chroma at {where}: start it with `chroma run --port N`. {exc}"
            ) from exc
        raise


def _writes(op: Op[Any]) -> bool:
    """Whether ``op`` changes the collection (touching reads do)."""
    if isinstance(op, ops.GetMemories | ops.SearchMemories):
        return op.touch
    return not isinstance(op, ops.ListMemories | ops.CountMemories | ops.ListMemoryNamespaces)


class ChromaMemoryStore(BaseMemoryStore):
    """Long-term memories in a Chroma collection (see `BaseMemoryStore` for the memory
    arguments).

    Args:
        url: ``chroma:///abs/dir`` or ``chroma://rel/dir`` for an embedded ``PersistentClient``,
            or ``chroma+http://host:port`` for a ``chroma run`` server.
        collection: the collection holding the records (created by `setup`).
        dimensions: the vector length, required (or an embedder that declares it): a Chroma
            collection holds vectors of one length.
    """

    def __init__(
        self,
        url: str,
        *,
        collection: str = DEFAULT_COLLECTION,
        embedder: Embedder | None = None,
        dimensions: int | None = None,
        dedupe_threshold: float | None = None,
        capacity: int | None = None,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        check_url(url, "a Chroma URL")
        self.path, self.host, self.port = parse_url(url.partition("?")[0])
        self.name = "chroma" if self.path is not None else "chroma+http"
        super().__init__(
            Capabilities(
                persistent=True,
                shared=self.host is not None,
                full_text_search=True,
                ttl=True,
                vector_search=True,
            ),
            embedder=embedder,
            dimensions=dimensions,
            dedupe_threshold=dedupe_threshold,
            capacity=capacity,
            text_weight=text_weight,
            vector_weight=vector_weight,
            retention=retention,
        )
        if self.dimensions is None:
            raise InvalidInput(
                "a Chroma memory store needs its vector length: pass dimensions=N or an "
                "embedder that declares its dimensions"
            )
        self.collection_name = collection
        self._where = self.path or f"{self.host}:{self.port}"
        self._client: ClientAPI | None = None
        self._collection: Collection | None = None
        self._stones: Collection | None = None
        self._acollections: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncCollection
        ] = weakref.WeakKeyDictionary()
        self._astones: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncCollection] = (
            weakref.WeakKeyDictionary()
        )
        self._batch = 1000
        self._lock = threading.Lock()
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._layout = ChromaLayout(self)

    # Clients and collections.

    def _settings(self) -> Settings:
        return Settings(anonymized_telemetry=False)

    def _sync_client(self) -> ClientAPI:
        if self._client is None:
            with _translated(self._where):
                if self.path is not None:
                    self._client = chromadb.PersistentClient(self.path, self._settings())
                else:
                    self._client = chromadb.HttpClient(
                        str(self.host), int(self.port or 8000), settings=self._settings()
                    )
                self._batch = self._client.get_max_batch_size()
        return self._client

    def _open(self, client: ClientAPI) -> Collection:
        return client.get_or_create_collection(
            self.collection_name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"memfold_layout": LAYOUT_VERSION},
            embedding_function=None,
        )

    def _sync_collection(self) -> Collection:
        if self._collection is None:
            client = self._sync_client()
            with _translated(self._where):
                self._collection = self._open(client)
        return self._collection

    def _sync_tombstones(self) -> Collection:
        if self._stones is None:
            client = self._sync_client()
            with _translated(self._where):
                self._stones = client.get_or_create_collection(
                    self.collection_name + stones.SUFFIX, embedding_function=None
                )
        return self._stones

    async def _new_async_client(self) -> AsyncClientAPI:
        client: AsyncClientAPI = await chromadb.AsyncHttpClient(
            str(self.host), int(self.port or 8000), settings=self._settings()
        )
        self._batch = await client.get_max_batch_size()
        return client

    async def _async_collection(self, tombstones: bool = False) -> AsyncCollection:
        """The records' collection (or the tombstones') on this event loop's client."""
        loop = asyncio.get_running_loop()
        opened = self._astones if tombstones else self._acollections
        found = opened.get(loop)
        if found is None:
            with _translated(self._where):
                client = await self._new_async_client()
                if tombstones:
                    found = await client.get_or_create_collection(
                        self.collection_name + stones.SUFFIX, embedding_function=None
                    )
                else:
                    found = await client.get_or_create_collection(
                        self.collection_name,
                        configuration={"hnsw": {"space": "cosine"}},
                        metadata={"memfold_layout": LAYOUT_VERSION},
                        embedding_function=None,
                    )
            opened[loop] = found
        return found

    def _stored_layout(self) -> int:
        """The layout version the collection's metadata records (0: no collection yet)."""
        client = self._sync_client()
        with _translated(self._where):
            try:
                found = client.get_collection(self.collection_name, embedding_function=None)
            except NotFoundError:
                return 0
        return int((found.metadata or {}).get("memfold_layout", LAYOUT_VERSION))

    async def _astored_layout(self) -> int:
        """Async `_stored_layout`."""
        if self.path is not None:
            return await asyncio.to_thread(self._stored_layout)
        with _translated(self._where):
            client = await self._new_async_client()
            try:
                found = await client.get_collection(self.collection_name, embedding_function=None)
            except NotFoundError:
                return 0
        return int((found.metadata or {}).get("memfold_layout", LAYOUT_VERSION))

    def schema_steps(self) -> list[SchemaSteps]:
        """The item layout's steps."""
        return [self._layout]

    def close(self) -> None:
        """Drop this store's client (an embedded database stays open for other clients of
        the same directory in this process)."""
        self._collection = None
        self._stones = None
        self._client = None

    async def aclose(self) -> None:
        """Async `close`."""
        self._acollections.pop(asyncio.get_running_loop(), None)
        self._astones.pop(asyncio.get_running_loop(), None)
        self.close()

    # Drivers.

    def execute(self, op: Op[T]) -> T:
        """Run one operation (several collection calls; writes under the store's lock)."""
        collection = self._sync_collection()
        flow = self._flow(op)
        with self._lock, _translated(self._where):
            try:
                call = next(flow)
                while True:
                    target = self._sync_tombstones() if call.tombstones else collection
                    call = flow.send(getattr(target, call.method)(**call.kwargs))
            except StopIteration as done:
                return cast("T", done.value)

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation on the async HTTP client (writes one at a time on each event
        loop), or in a worker thread for an embedded store (chromadb has no async in-process
        client)."""
        if self.path is not None:
            return await asyncio.to_thread(self.execute, op)
        if not _writes(op):
            return await self._arun(op)
        lock = self._alocks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:  # a put's duplicate look-up and eviction see the writes before it
            return await self._arun(op)

    async def _arun(self, op: Op[T]) -> T:
        flow = self._flow(op)
        with _translated(self._where):
            try:
                call = next(flow)
                while True:
                    target = await self._async_collection(call.tombstones)
                    call = flow.send(await getattr(target, call.method)(**call.kwargs))
            except StopIteration as done:
                return cast("T", done.value)

    def _flow(self, op: Op[Any]) -> Flow[Any]:
        match op:
            case ops.PutMemories():
                return self._put(op)
            case ops.GetMemories():
                return self._get(op)
            case ops.DeleteMemories(namespace, ids):
                return self._delete([m.item_id(namespace, i) for i in ids])
            case ops.DeleteMemoriesWhere(prefix, where):
                return self._delete_where(prefix, where)
            case ops.ListMemories():
                return self._list(op)
            case ops.CountMemories(prefix, where, now, stale_model):
                return self._count(prefix, where, now, stale_model)
            case ops.SearchMemories():
                return self._search(op)
            case ops.ListMemoryNamespaces():
                return self._namespaces(op)
            case ops.SetEmbeddings():
                return self._set_embeddings(op)
            case ops.SweepMemories():
                return self._sweep(op)
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._lift(op)
        raise TypeError(f"the Chroma memory store cannot run {type(op).__name__}")

    # Reading helpers.

    def _fetch(self, ids: Sequence[str], include: list[str]) -> Flow[dict[str, Any]]:
        """``get`` by ids in batches; one merged result."""
        merged: dict[str, list[Any]] = {"ids": [], **{f: [] for f in include}}
        for chunk in _chunks(list(ids), self._batch):
            found = yield Call("get", {"ids": list(chunk), "include": include})
            merged["ids"] += found["ids"]
            for f in include:
                merged[f] += list(found[f])
        return merged

    def _matching(
        self,
        prefix: str,
        now: datetime | None,
        where: Filter,
        include: list[str],
        extra: Any = None,
    ) -> Flow[list[tuple[Any, ...]]]:
        """``(id, metadata, other included fields...)`` of the items under ``prefix`` (live at
        ``now`` unless None) passing ``where``."""
        clause = m.all_of(m.under(prefix, now), m.to_where(where), extra)
        found = yield Call("get", {"where": clause, "include": ["metadatas", *include]})
        rows = _rows(found, ["metadatas", *include])
        return [row for row in rows if where.matches(_value(row[1]))]

    def _out(
        self, meta: dict[str, Any], text: str | None, embedding: Any, include: bool
    ) -> MemoryRecord:
        return m.record(meta, text, embedding if include else None)

    # Operations.

    def _erased(self, records: Sequence[MemoryRecord], now: datetime) -> Flow[set[str]]:
        """The ids of the live tombstones that refuse writing ``records``."""
        wanted = {i for r in records for i in stones.stone_ids(r.namespace)}
        found = yield Call(
            "get", {"ids": sorted(wanted), "include": ["metadatas"]}, tombstones=True
        )
        return {
            i
            for i, meta in zip(found["ids"], found["metadatas"], strict=True)
            if stones.decode(meta).live(now)
        }

    def _put(self, op: ops.PutMemories) -> Flow[list[MemoryRecord]]:
        blocked = yield from self._erased(op.records, op.now)
        for record in op.records:  # refused before anything is written
            if blocked.intersection(stones.stone_ids(record.namespace)):
                raise namespace_erased(record.namespace)
        now_us = m.micros(op.now)
        keys = [namespace_key(r.namespace) for r in op.records]
        ids = [m.item_id(k, str(r.id)) for k, r in zip(keys, op.records, strict=True)]
        old = yield from self._fetch(ids, ["metadatas"])
        existing: dict[str, dict[str, Any]] = dict(zip(old["ids"], old["metadatas"], strict=True))
        previous = {i: meta for i, meta in existing.items() if int(meta["_exp"]) > now_us}
        batch: dict[str, tuple[MemoryRecord, dict[str, Any], Matrix | None, str]] = {}
        stored: list[MemoryRecord] = []
        for record, key, item, value, terms, vector in zip(
            op.records, keys, ids, op.values, op.terms, op.vectors, strict=True
        ):
            prev = batch[item][1] if item in batch else previous.get(item)
            if prev is None and vector is not None and op.dedupe_threshold is not None:
                found = yield from self._duplicate(key, vector, op, batch)
                if found is not None:
                    prev = found
                    head = _head(found)
                    record = replace(record, id=head[0], importance=max(record.importance, head[2]))
                    item = m.item_id(key, str(record.id))
            if prev is not None and not op.keep_times:
                record = replace(record, created_at=m.record(prev, None).created_at)
            meta = m.metadata(record, value, terms, vector is not None)
            batch.pop(item, None)
            batch[item] = (record, meta, vector, record.text)
            stored.append(record)
        # Chroma keeps the keys an upsert leaves out: clear those of every version overwritten
        # (expired ones too, and the near duplicates merged into).
        read = set(ids)
        more = yield from self._fetch([i for i in batch if i not in read], ["metadatas"])
        existing.update(zip(more["ids"], more["metadatas"], strict=True))
        items = [(i, (r, m.replacing(meta, existing.get(i)), v, t))
                 for i, (r, meta, v, t) in batch.items()]  # fmt: skip
        placeholder = m.placeholder(int(self.dimensions or 1))
        for chunk in _chunks(items, self._batch):
            yield Call(
                "upsert",
                {
                    "ids": [i for i, _ in chunk],
                    "embeddings": [placeholder if v is None else v for _, (_, _, v, _) in chunk],
                    "metadatas": [meta for _, (_, meta, _, _) in chunk],
                    "documents": [text for _, (_, _, _, text) in chunk],
                },
            )
        # An erasure that placed its tombstones after the check above may have read the
        # namespace before these items landed: take back what it would have deleted.
        blocked = yield from self._erased(op.records, op.now)
        if blocked:
            doomed = [
                (item, record.namespace)
                for item, (record, *_) in items
                if blocked.intersection(stones.stone_ids(record.namespace))
            ]
            for chunk in _chunks(doomed, self._batch):
                yield Call("delete", {"ids": [item for item, _ in chunk]})
            raise namespace_erased(doomed[0][1])
        if op.capacity is not None:
            for key in dict.fromkeys(keys):
                yield from self._evict(key, op.capacity, op.now)
        return stored

    def _erase(self, op: EraseSubject) -> Flow[ErasureCounts]:
        """Place the tombstones, then delete the records under ``(tenant,)`` or
        ``(tenant, user_id)`` (a dry run only counts them)."""
        wanted = op.memory_prefix
        if wanted is None:
            return ErasureCounts()
        if op.tombstones and not op.dry_run:
            yield Call(
                "upsert",
                {
                    "ids": [stones.stone_id(s.tenant, s.kind, s.name) for s in op.tombstones],
                    "embeddings": [list(stones.EMBEDDING) for _ in op.tombstones],
                    "metadatas": [stones.metadata(s) for s in op.tombstones],
                },
                tombstones=True,
            )
        found = yield Call("get", {"where": m.under(namespace_key(wanted), None), "include": []})
        if not op.dry_run:
            for chunk in _chunks(found["ids"], self._batch):
                yield Call("delete", {"ids": list(chunk)})
        return ErasureCounts(memories=len(found["ids"]))

    def _lift(self, op: LiftTombstones) -> Flow[int]:
        """Delete the tombstones ``op`` lifts; returns how many live ones went."""
        found = yield Call(
            "get", {"where": {"tenant": {"$eq": op.tenant}}, "include": ["metadatas"]},
            tombstones=True,
        )  # fmt: skip
        doomed = {
            i: stone
            for i, meta in zip(found["ids"], found["metadatas"], strict=True)
            if lifted(stone := stones.decode(meta), op)
        }
        if doomed:
            yield Call("delete", {"ids": list(doomed)}, tombstones=True)
        return sum(stone.live(op.now) for stone in doomed.values())

    def _duplicate(
        self,
        key: str,
        vector: Matrix,
        op: ops.PutMemories,
        batch: dict[str, tuple[MemoryRecord, dict[str, Any], Matrix | None, str]],
    ) -> Flow[dict[str, Any] | None]:
        """The metadata of the most similar live record of namespace ``key`` (stored, or
        earlier in this write) at or above the threshold, or None. A stored record this write
        replaced counts as it is now written, not as it was stored."""
        threshold = float(op.dedupe_threshold or 1.0)
        best: tuple[float, dict[str, Any]] | None = None
        live = {"$and": [{"_ns": {"$eq": key}}, {"_v": {"$eq": True}},
                         {"_exp": {"$gt": m.micros(op.now)}}]}  # fmt: skip
        replaced = sum(1 for meta in (v[1] for v in batch.values()) if meta["_ns"] == key)
        found = yield Call(
            "query",
            {"query_embeddings": [vector], "n_results": 1 + replaced, "where": live,
             "include": ["metadatas", "distances"]},
        )  # fmt: skip
        for item, distance, meta in zip(
            found["ids"][0], found["distances"][0], found["metadatas"][0], strict=True
        ):
            if item not in batch:  # the nearest stored record this write leaves as it is
                best = (1.0 - float(distance), meta)
                break
        for _, (_record, meta, other, _) in batch.items():
            if other is not None and meta["_ns"] == key:
                sim = float(other @ vector)
                if best is None or sim > best[0]:
                    best = (sim, meta)
        return best[1] if best is not None and best[0] >= threshold else None

    def _evict(self, key: str, capacity: int, now: datetime) -> Flow[None]:
        found = yield Call("get", {"where": {"_ns": {"$eq": key}}, "include": ["metadatas"]})
        if len(found["ids"]) <= capacity:
            return
        ranked = sorted(
            zip(found["ids"], found["metadatas"], strict=True),
            key=lambda row: _evict_key(row[1], now),
        )
        doomed = [i for i, _ in ranked[: len(ranked) - capacity]]
        yield Call("delete", {"ids": doomed})

    def _get(self, op: ops.GetMemories) -> Flow[list[MemoryRecord]]:
        wanted = [m.item_id(op.namespace, i) for i in op.ids]
        include = [*_ALL, "embeddings"] if op.include_embedding else list(_ALL)
        found = yield from self._fetch(wanted, include)
        by_id = {row[0]: row for row in _rows(found, include) if _live(row[1], op.now)}
        rows = [by_id[i] for i in wanted if i in by_id]
        if op.touch and rows:
            rows = yield from self._touch(rows, op.now)
        return [
            self._out(r[1], r[2], r[3] if len(r) > 3 else None, op.include_embedding) for r in rows
        ]

    def _touch(self, rows: list[tuple[Any, ...]], now: datetime) -> Flow[list[tuple[Any, ...]]]:
        """Mark the items used now and restart their TTLs; the rows with new metadata."""
        touched = []
        for row in rows:
            record = m.record(row[1], None)
            record = replace(record, last_used_at=now, expires_at=expiry(now, record.ttl_seconds))
            meta = {
                **row[1],
                "_r": m.encode_fields(record, encode_json(record.value, "a memory's value")),
                "_exp": m.NEVER if record.expires_at is None else m.micros(record.expires_at),
            }
            touched.append((row[0], meta, *row[2:]))
        yield Call("update", {"ids": [r[0] for r in touched], "metadatas": [r[1] for r in touched]})
        return touched

    def _delete(self, ids: list[str]) -> Flow[int]:
        found = yield from self._fetch(ids, [])
        if found["ids"]:
            yield Call("delete", {"ids": found["ids"]})
        return len(found["ids"])

    def _delete_where(self, prefix: str, where: Filter) -> Flow[int]:
        rows = yield from self._matching(prefix, None, where, [])
        for chunk in _chunks([r[0] for r in rows], self._batch):
            yield Call("delete", {"ids": list(chunk)})
        return len(rows)

    def _stale_rows(
        self, prefix: str, now: datetime, where: Filter, model: str | None
    ) -> Flow[list[tuple[Any, ...]]]:
        include = ["documents"] if model is not None else []
        rows = yield from self._matching(prefix, now, where, include)
        if model is None:
            return rows
        return [r for r in rows if r[2] and (not r[1]["_v"] or r[1].get("_model") != model)]

    def _list(self, op: ops.ListMemories) -> Flow[list[MemoryRecord]]:
        rows = yield from self._stale_rows(op.prefix, op.now, op.filter, op.stale_model)
        rows.sort(key=lambda r: (int(r[1]["_created"]), _head(r[1])[0], r[1]["_ns"]))
        page = [r[0] for r in rows[op.offset : op.offset + op.limit]]
        include = [*_ALL, "embeddings"] if op.include_embedding else list(_ALL)
        found = yield from self._fetch(page, include)
        by_id = {row[0]: row for row in _rows(found, include)}
        return [
            self._out(by_id[i][1], by_id[i][2], by_id[i][-1], op.include_embedding)
            for i in page
            if i in by_id
        ]

    def _count(self, prefix: str, where: Filter, now: datetime, model: str | None) -> Flow[int]:
        rows = yield from self._stale_rows(prefix, now, where, model)
        return len(rows)

    def _namespaces(self, op: ops.ListMemoryNamespaces) -> Flow[list[Namespace]]:
        found = yield Call("get", {"where": m.under(op.prefix, op.now), "include": ["metadatas"]})
        return namespace_page((meta["_ns"] for meta in found["metadatas"]), op)

    def _set_embeddings(self, op: ops.SetEmbeddings) -> Flow[int]:
        wanted = {m.item_id(op.namespace, i): v for i, v in zip(op.ids, op.vectors, strict=True)}
        found = yield from self._fetch(list(wanted), ["metadatas"])
        if not found["ids"]:
            return 0
        metas = []
        for meta in found["metadatas"]:
            record = replace(m.record(meta, None), embedding_model=op.model)
            value = encode_json(record.value, "a memory's value")
            metas.append({**meta, "_r": m.encode_fields(record, value), "_model": op.model,
                          "_v": True})  # fmt: skip
        yield Call(
            "update",
            {"ids": found["ids"], "embeddings": [wanted[i] for i in found["ids"]],
             "metadatas": metas},
        )  # fmt: skip
        return len(found["ids"])

    def _sweep(self, op: ops.SweepMemories) -> Flow[int]:
        """Expired records and records older than the policy's max age are found by ``where``
        on ``_exp`` and ``_created``; for ``keep_last`` each record's namespace and creation
        time are read (Chroma cannot count or order items by metadata)."""
        policy, scope = op.policy, [m.under(op.prefix, None)] if op.prefix else []
        tests: list[m.Where] = [{"_exp": {"$lte": m.micros(op.now)}}]
        if policy.max_age_seconds is not None:
            cutoff = m.micros(op.now) - round(policy.max_age_seconds * 1_000_000)
            tests.append({"_created": {"$lt": cutoff}})
        where = m.all_of(*scope, m.any_of(tests))
        found = yield Call("get", {"where": where, "include": []})
        doomed = set(found["ids"])
        if policy.keep_last is not None:
            listed = yield Call("get", {"where": m.all_of(*scope), "include": ["metadatas"]})
            spaces: dict[str, list[tuple[int, str, str]]] = {}
            for item, meta in zip(listed["ids"], listed["metadatas"], strict=True):
                if item not in doomed:
                    record_id = item[len(str(meta["_ns"])) :]
                    entry = (int(meta["_created"]), record_id, item)
                    spaces.setdefault(str(meta["_ns"]), []).append(entry)
            for records in spaces.values():
                doomed.update(item for *_, item in sorted(records)[: -policy.keep_last])
        if not op.dry_run:
            for chunk in _chunks(sorted(doomed), self._batch):
                yield Call("delete", {"ids": list(chunk)})
        return len(doomed)

    def _search(self, op: ops.SearchMemories) -> Flow[list[MemoryHit]]:
        """Ranks by BM25 over ``op.terms`` and by cosine to ``op.vector``, each when given; a
        search with neither (a query of stop words only) finds nothing."""
        include = ["documents", "embeddings"] if op.vector is not None else ["documents"]
        candidates: dict[str, tuple[Any, ...]] = {}
        text_scores: dict[str, float] | None = None
        cosines: dict[str, float] | None = None
        if op.terms:
            stats = yield from self._matching(op.prefix, op.now, op.filter, [])
            n_docs = len(stats)
            total = sum(int(r[1]["_len"]) for r in stats)
            has_term = m.any_of([{"_terms": {"$contains": t}} for t in op.terms])
            found = yield from self._matching(op.prefix, op.now, op.filter, include, has_term)
            found.sort(key=lambda r: r[0])
            terms = [_terms(r[1]) for r in found]
            df = {t: sum(1 for doc in terms if t in doc) for t in op.terms}
            scores = bm25(op.terms, terms, n_docs=n_docs, df=df, weights=op.term_weights,
                          avg_len=total / n_docs if n_docs else 0.0)  # fmt: skip
            ranked = sorted(zip(scores, found, strict=True), key=lambda s: -s[0])[: op.pool]
            text_scores = {row[0]: score for score, row in ranked}
            candidates.update({row[0]: row for _, row in ranked})
        if op.vector is not None:
            rows = yield from self._nearest(op, include)
            cosines = {}
            for sim, row in rows:
                cosines[row[0]] = sim
                candidates[row[0]] = row
            for item, row in candidates.items():
                if item not in cosines and row[1]["_v"]:
                    cosines[item] = float(np.asarray(row[3], dtype=np.float32) @ op.vector)
        records = {i: m.record(row[1], row[2]) for i, row in candidates.items()}
        hits = rank_hits(op, text_scores, cosines, records)
        rows_out = [candidates[m.item_id(namespace_key(h.record.namespace), str(h.record.id))]
                    for h in hits]  # fmt: skip
        if op.touch and rows_out:
            rows_out = yield from self._touch(rows_out, op.now)
        return [
            replace(hit, record=self._out(row[1], row[2], row[3] if len(row) > 3 else None,
                                          op.include_embedding))
            for hit, row in zip(hits, rows_out, strict=True)
        ]  # fmt: skip

    def _nearest(
        self, op: ops.SearchMemories, include: list[str]
    ) -> Flow[list[tuple[float, tuple[Any, ...]]]]:
        """The ``op.pool`` most similar live items passing the filter, best first: more are
        asked for each round until enough pass, so a filter never cuts results short. Chroma's
        filtered index search may also stop short of what matches; then the matching items
        are ranked exactly."""
        assert op.vector is not None
        clause = m.all_of(m.under(op.prefix, op.now), m.to_where(op.filter),
                          {"_v": {"$eq": True}})  # fmt: skip
        wanted = max(op.pool, 16)
        n = wanted
        while True:
            found = yield Call(
                "query",
                {"query_embeddings": [op.vector], "n_results": n, "where": clause,
                 "include": ["metadatas", "distances", *include]},
            )  # fmt: skip
            got = len(found["ids"][0])
            rows = []
            for j in range(got):
                meta = found["metadatas"][0][j]
                if not op.filter.matches(_value(meta)):
                    continue
                row = (found["ids"][0][j], meta, found["documents"][0][j],
                       found["embeddings"][0][j])  # fmt: skip
                rows.append((1.0 - float(found["distances"][0][j]), row))
            if len(rows) >= wanted:
                return rows[:wanted]
            if got < n:
                every = yield from self._matching(
                    op.prefix, op.now, op.filter, include, {"_v": {"$eq": True}}
                )
                if len(every) <= len(rows):
                    return rows
                query = np.asarray(op.vector, dtype=np.float64)
                matrix = np.asarray([row[3] for row in every], dtype=np.float64)
                norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
                sims = (matrix @ query) / np.where(norms == 0, 1.0, norms)
                order = np.argsort(-sims, kind="stable")[:wanted]
                return [(float(sims[i]), every[i]) for i in order]
            n *= 4


def _value(meta: dict[str, Any]) -> dict[str, Any]:
    return cast("dict[str, Any]", m.record(meta, None).value)


def _head(meta: dict[str, Any]) -> tuple[str, str | None, float, float | None]:
    record = m.record(meta, None)
    return str(record.id), record.embedding_model, record.importance, record.ttl_seconds


def _terms(meta: dict[str, Any]) -> list[str]:
    return list(meta.get("_terms") or ())


def _evict_key(meta: dict[str, Any], now: datetime) -> tuple[bool, float, datetime, str]:
    record = m.record(meta, None)
    return (
        _live(meta, now),
        record.importance,
        record.last_used_at or now,
        str(record.id),
    )


class ChromaLayout(SchemaSteps):
    """The item layout's steps for one collection, recorded in its metadata.

    Chroma has no lock: its one step, creating the collection, is atomic in Chroma
    (``get_or_create_collection``), so two processes upgrading at once are safe; a later step
    must be safe to apply twice.
    """

    backend = "chroma"
    kind = "memories"
    steps = LAYOUT_STEPS

    def __init__(self, store: ChromaMemoryStore) -> None:
        self.store = store
        self.where = f"in collection {store.collection_name!r}"

    def status(self) -> SchemaStatus:
        """Read the collection's layout version (changes nothing)."""
        return self.status_at(self.store._stored_layout())

    async def astatus(self) -> SchemaStatus:
        """Async `status`."""
        return self.status_at(await self.store._astored_layout())

    def upgrade(self) -> SchemaStatus:
        """Create the collection if it does not exist."""
        found = self.status()
        if found.pending:
            self.store._sync_collection()
        return found

    async def aupgrade(self) -> SchemaStatus:
        """Async `upgrade`."""
        if self.store.path is not None:
            return await asyncio.to_thread(self.upgrade)
        found = await self.astatus()
        if found.pending:
            await self.store._async_collection()
        return found
