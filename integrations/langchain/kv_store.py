"""A LangChain byte store (``BaseStore[str, bytes]``) over a memfold memory store.

Each key is a record id in the store's namespace; the bytes live base64-encoded in the
record's JSON value (under `memfold.memory_model.BYTES_KEY`), with no text and no vector, so a
store's redactor leaves them as they are. Use it wherever LangChain takes a
``ByteStore``: ``CacheBackedEmbeddings.from_bytes_store``, ``create_kv_docstore`` for a
multi-vector retriever, or as a plain key-value cache.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Sequence

from langchain_core.stores import BaseStore

from memfold.errors import BackendUnavailable, InvalidInput
from memfold.memories import (
    MemoryRecord,
    MemoryStore,
    Namespace,
    check_namespace,
    open_memory_store,
)
from memfold.memory_model import BYTES_KEY
from memfold.stores import check_id

__all__ = ["MemfoldKVStore"]

_PAGE = 1000


def _bytes(record: MemoryRecord) -> bytes:
    """The bytes of a key-value entry, or `BackendUnavailable` if its value holds none."""
    try:
        return base64.b64decode(str(record.value[BYTES_KEY]), validate=True)
    except (KeyError, ValueError) as exc:  # binascii.Error is a ValueError
        raise BackendUnavailable(
            f"key {record.id!r} of {record.namespace!r} holds no valid base64 bytes under "
            f"{BYTES_KEY!r} (damaged, or not written by a byte store): set or delete it"
        ) from exc


def _keys(keys: object) -> list[str]:
    """``keys`` as a list, or `InvalidInput`: a sequence (not a str) of str keys."""
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise InvalidInput(f"keys must be a list of str, got {type(keys).__name__}")
    if not all(isinstance(k, str) for k in keys):
        raise InvalidInput("each key must be a str")
    return list(keys)


def _pairs(pairs: object) -> dict[str, bytes]:
    """The value each key is set to (the last one given), or `InvalidInput`: a sequence of
    ``(str, bytes)`` pairs."""
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence):
        raise InvalidInput(f"key_value_pairs must be a list of pairs, got {type(pairs).__name__}")
    latest: dict[str, bytes] = {}
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise InvalidInput(f"each of key_value_pairs must be a (key, value) pair, got {pair!r}")
        key, value = pair
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise InvalidInput(
                f"a byte store maps str keys to bytes, got {type(key).__name__} key and "
                f"{type(value).__name__} value"
            )
        latest[check_id(key, "a key")] = value  # "" would be given a fresh id
    return latest


def _check_prefix(prefix: object) -> None:
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidInput(f"prefix must be a str or None, got {type(prefix).__name__}")


class MemfoldKVStore(BaseStore[str, bytes]):
    """Bytes by key, in one namespace of a memfold memory store.

    Args:
        store: a memfold memory store, or its URL.
        namespace: where the keys live, ``(tenant, ...)`` (None: ``(default tenant, "kv")``,
            which a store opened with ``require_tenant`` refuses).
        ttl_seconds: let each key expire this long after it was last set (None: never).

    Examples:
        >>> kv = MemfoldKVStore("memory://")
        >>> kv.mset([("a", b"1"), ("b", b"2")])
        >>> kv.mget(["a", "missing"]), sorted(kv.yield_keys())
        ([b'1', None], ['a', 'b'])
    """

    def __init__(
        self,
        store: MemoryStore | str = "memory://",
        *,
        namespace: Namespace | None = None,
        ttl_seconds: float | None = None,
    ) -> None:
        self.store: MemoryStore = open_memory_store(store) if isinstance(store, str) else store
        self.namespace = (
            (self.store.resolve_tenant(None), "kv")
            if namespace is None
            else check_namespace(namespace)
        )
        self.ttl_seconds = ttl_seconds

    def _records(self, pairs: Sequence[tuple[str, bytes]]) -> list[MemoryRecord]:
        latest = _pairs(pairs)  # the last value of a key set twice wins
        return [
            MemoryRecord(
                self.namespace,
                key,
                value={BYTES_KEY: base64.b64encode(value).decode()},
                ttl_seconds=self.ttl_seconds,
            )
            for key, value in latest.items()
        ]

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (None for missing ones), in order.

        Raises:
            BackendUnavailable: a key's record holds no valid base64 bytes (damaged, or not
                written by a byte store).
        """
        keys = _keys(keys)
        found = {r.id: _bytes(r) for r in self.store.get_many(self.namespace, keys)}
        return [found.get(k) for k in keys]

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async `mget`."""
        keys = _keys(keys)
        found = {r.id: _bytes(r) for r in await self.store.aget_many(self.namespace, keys)}
        return [found.get(k) for k in keys]

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Set the values of keys, in one atomic write."""
        if records := self._records(key_value_pairs):
            self.store.put_many(records, dedupe_threshold=None)

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        """Async `mset`."""
        if records := self._records(key_value_pairs):
            await self.store.aput_many(records, dedupe_threshold=None)

    def mdelete(self, keys: Sequence[str]) -> None:
        """Delete keys (missing ones are fine)."""
        if keys := _keys(keys):
            self.store.delete(self.namespace, keys)

    async def amdelete(self, keys: Sequence[str]) -> None:
        """Async `mdelete`."""
        if keys := _keys(keys):
            await self.store.adelete(self.namespace, keys)

    def _matching(self, records: list[MemoryRecord], prefix: str | None) -> list[str]:
        # The namespace's records, oldest first; keys are ids, so a prefix is matched here.
        ids = [str(r.id) for r in records if r.namespace == self.namespace]
        return [i for i in ids if prefix is None or i.startswith(prefix)]

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """The keys (starting with ``prefix``), oldest first."""
        _check_prefix(prefix)
        offset = 0
        while records := self.store.list_records(self.namespace, limit=_PAGE, offset=offset):
            yield from self._matching(records, prefix)
            offset += len(records)

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        """Async `yield_keys`."""
        _check_prefix(prefix)
        offset = 0
        while records := await self.store.alist_records(self.namespace, limit=_PAGE, offset=offset):
            for key in self._matching(records, prefix):
                yield key
            offset += len(records)
