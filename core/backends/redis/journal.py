"""The effect journal on plain Redis 7: one hash per thread.

For key prefix ``P``, tenant ``T`` and thread ``H`` (escaped as in
`memfold.backends.redis.keys`), the hash ``P{T}:j:H`` maps ``<namespace>:<tool_call_id>`` (both
escaped) to ``<recorded µs>:<tag>:<bytes>``. A record is ``HSETNX`` then ``HGET`` in one
``MULTI``, so it is atomic and insert-if-absent in one round trip; deleting a thread's journal is
one ``DEL``.

Examples:
    >>> from memfold.journal import EffectJournal
    >>> journal = EffectJournal(RedisJournalStore("redis://127.0.0.1:6379/0"))
    >>> journal_key("memfold:", "acme", "t:1")
    'memfold:{acme}:j:t%3A1'
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import redis
import redis.asyncio

from memfold.backends.redis.keys import check_prefix, escape, unescape
from memfold.backends.redis.store import (
    DEFAULT_PREFIX,
    _check_bytes,
    _close_at_shutdown,
    _translated,
    _where,
    split_url,
)
from memfold.checkpoint_model import Blob
from memfold.errors import BackendUnavailable, InvalidInput
from memfold.journal import (
    DeleteEffects,
    GetEffect,
    JournalEntry,
    ListEffects,
    RecordEffect,
    sort_key,
)
from memfold.ops import Op
from memfold.stores import BaseStore, Capabilities

__all__ = ["LAYOUT_VERSION", "RedisJournalStore", "journal_key"]

T = TypeVar("T")

LAYOUT_VERSION: Final = 1
"""The version of the journal's key layout, returned by ``setup()``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ATOMIC = (RecordEffect, DeleteEffects)  # several commands, run in one MULTI


def journal_key(prefix: str, tenant: str, thread_id: str) -> str:
    """The hash holding one thread's journal."""
    return f"{prefix}{{{escape(tenant)}}}:j:{escape(thread_id)}"


def _field(namespace: str, tool_call_id: str) -> str:
    return f"{escape(namespace)}:{escape(tool_call_id)}"


def _pack(op: RecordEffect) -> bytes:
    head = f"{(op.recorded_at - _EPOCH) // _US}:{escape(op.value.tag)}:"
    return head.encode() + op.value.data


def _entry(thread_id: str, namespace: str, tool_call_id: str, packed: bytes) -> JournalEntry:
    recorded_us, tag, data = packed.split(b":", 2)
    recorded_at = _EPOCH + timedelta(microseconds=int(recorded_us))
    return JournalEntry(thread_id, namespace, tool_call_id, Blob(unescape(tag), data), recorded_at)


class RedisJournalStore(BaseStore):
    """An effect journal in plain Redis 7 (no modules): a hash per thread.

    Args:
        url: ``redis://[:password@]host:6379/0`` (or ``rediss://``, ``unix://``).
        client: a sync ``redis.Redis`` to use instead of one made from ``url``.
        async_client: a ``redis.asyncio.Redis`` to use instead of one made from ``url``.
        key_prefix: the start of every key, so several stores can share one database.
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        key_prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise InvalidInput(f"a Redis URL must be a str, got {type(url).__name__}")
        if url is None and client is None and async_client is None:
            raise InvalidInput(
                "RedisJournalStore needs a redis:// URL, a client or an async_client"
            )
        for given in (client, async_client):
            if given is not None:
                _check_bytes(given)
        self.key_prefix = check_prefix(key_prefix)
        self._url = None if url is None else self._plain(url)
        self._owns_client = client is None and self._url is not None
        self._client = client
        if self._owns_client and self._url is not None:
            self._client = redis.Redis.from_url(self._url)
        self._given_async = async_client
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        source = self._client if self._client is not None else async_client
        self._where = "" if source is None else _where(source)
        super().__init__(Capabilities(persistent=True, shared=True, effect_journal=True))

    @staticmethod
    def _plain(url: str) -> str:
        plain, options = split_url(url)
        if options:
            raise InvalidInput(
                f"pass key_prefix to RedisJournalStore as a keyword argument: {sorted(options)}"
            )
        return plain

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisJournalStore:
        """A journal store for ``url``, taking ``key_prefix`` from its query too."""
        plain, from_query = split_url(url)
        options = {**from_query, **options}
        if unknown := sorted(set(options) - {"key_prefix", "client", "async_client"}):
            raise InvalidInput(f"the Redis journal takes only key_prefix, not {unknown}")
        return cls(plain, **options)

    def _sync(self) -> redis.Redis:
        if self._client is None:
            raise InvalidInput(
                "this RedisJournalStore was given only an async_client: use the async methods "
                "(aget, arecord, ...), or pass client=redis.Redis(...) or a URL too"
            )
        return self._client

    async def _async(self) -> redis.asyncio.Redis:
        """The async client given, or one per event loop (closed when the loop shuts down)."""
        if self._given_async is not None:
            return self._given_async
        if self._url is None:
            raise InvalidInput(
                "this RedisJournalStore was given only a sync client: use the sync methods, "
                "or pass async_client=redis.asyncio.Redis(...) or a URL too"
            )
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)
        if found is None:
            client = redis.asyncio.Redis.from_url(self._url)
            closer = _close_at_shutdown(client)
            await closer.asend(None)
            found = self._aclients[loop] = (client, closer)
        return found[0]

    # Each operation: its commands queued on a pipeline (sync or async), then its replies decoded.

    def _queue(self, op: Op[Any], pipe: Any) -> None:
        match op:
            case RecordEffect(tenant, thread_id, namespace, tool_call_id):
                key = journal_key(self.key_prefix, tenant, thread_id)
                field = _field(namespace, tool_call_id)
                pipe.hsetnx(key, field, _pack(op))
                pipe.hget(key, field)
            case GetEffect(tenant, thread_id, namespace, tool_call_id):
                pipe.hget(
                    journal_key(self.key_prefix, tenant, thread_id), _field(namespace, tool_call_id)
                )
            case ListEffects(tenant, thread_id):
                pipe.hgetall(journal_key(self.key_prefix, tenant, thread_id))
            case DeleteEffects(tenant, thread_id):
                key = journal_key(self.key_prefix, tenant, thread_id)
                pipe.hlen(key)
                pipe.delete(key)
            case _:
                raise InvalidInput(f"the Redis journal cannot run {type(op).__name__}")

    @staticmethod
    def _decode(op: Op[Any], replies: list[Any]) -> Any:
        match op:
            case RecordEffect(_, thread_id, namespace, tool_call_id):
                return _entry(thread_id, namespace, tool_call_id, replies[1])
            case GetEffect(_, thread_id, namespace, tool_call_id):
                packed = replies[0]
                return (
                    None if packed is None else _entry(thread_id, namespace, tool_call_id, packed)
                )
            case ListEffects(_, thread_id, namespace):
                entries = []
                for field, packed in replies[0].items():
                    ns, call_id = field.split(b":", 1)
                    entry = _entry(thread_id, unescape(ns), unescape(call_id), packed)
                    if namespace is None or entry.namespace == namespace:
                        entries.append(entry)
                return sorted(entries, key=sort_key)
            case DeleteEffects():
                return int(replies[0])
        raise InvalidInput(f"the Redis journal cannot run {type(op).__name__}")

    def execute(self, op: Op[T]) -> T:
        """Run one operation in one round trip (in a ``MULTI`` when it sends several commands)."""
        with _translated(self._where):
            pipe = self._sync().pipeline(transaction=isinstance(op, _ATOMIC))
            self._queue(op, pipe)
            replies = pipe.execute()
        result: T = self._decode(op, replies)
        return result

    async def aexecute(self, op: Op[T]) -> T:
        """Async `execute`, on this event loop's client."""
        with _translated(self._where):
            pipe = (await self._async()).pipeline(transaction=isinstance(op, _ATOMIC))
            self._queue(op, pipe)
            replies = await pipe.execute()
        result: T = self._decode(op, replies)
        return result

    def setup(self) -> int:
        """Check that Redis answers (the journal needs no schema); returns the layout version."""
        with _translated(self._where):
            if not self._sync().ping():
                raise BackendUnavailable(f"Redis at {self._where} did not answer PING")
        return LAYOUT_VERSION

    async def asetup(self) -> int:
        """Async `setup`."""
        with _translated(self._where):
            if not await (await self._async()).ping():
                raise BackendUnavailable(f"Redis at {self._where} did not answer PING")
        return LAYOUT_VERSION

    def close(self) -> None:
        """Close the clients this store made (clients you passed in stay open)."""
        if self._owns_client and self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the clients this store made, this event loop's async one included."""
        found = self._aclients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[1].aclose()
        self.close()
