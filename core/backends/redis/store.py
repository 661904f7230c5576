"""The Redis thread store: runs `memfold.backends.redis.calls` on a sync or an async client.

Each operation is one round trip: a Lua script run by ``EVALSHA`` for anything that touches
several keys (so it is atomic), or one plain command. Scripts are loaded by ``setup()``, and
again on the fly if the server has forgotten them (a restart, ``SCRIPT FLUSH``). redis-py uses
hiredis to parse replies whenever hiredis is installed.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from typing import Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url
from redis.exceptions import NoScriptError, RedisError, ResponseError

from memfold import ops
from memfold.backends.redis import scripts
from memfold.backends.redis.calls import Call, Calls, Flow
from memfold.backends.redis.elements import ElementCodec
from memfold.backends.redis.erasure import erase_threads, find_threads
from memfold.backends.redis.keys import LAYOUT_STEPS, check_prefix, layout_key
from memfold.backends.redis.layout import UPGRADE, RedisLayout
from memfold.backends.redis.scripts import Script
from memfold.backends.redis.thread_sweep import ThreadSweeps, register
from memfold.backends.redis.tombstones import lift, named
from memfold.errors import BackendUnavailable, Conflict, Erased, InvalidInput, MemfoldError
from memfold.limits import MAX_SECONDS
from memfold.retention import POLICY_OPTIONS, RetentionPolicy, check_policy, policy_from_options
from memfold.schema_steps import SchemaSteps
from memfold.stores import BaseThreadStore, Capabilities
from memfold.tombstones import EraseSubject, FindThreads, LiftTombstones, erased
from memfold.urls import check_url

__all__ = ["RedisThreadStore"]

T = TypeVar("T")

DEFAULT_PREFIX: Final = "memfold:"

_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    **POLICY_OPTIONS,
    "key_prefix": str,
    "ttl_seconds": float,
    "max_messages": int,
    "compress_min_bytes": int,
}

_CREATING: Final = (
    ops.AppendMessages,
    ops.ReplaceThread,
    ops.SetThreadMetadata,
    ops.RestoreThread,
)
"""The writes that may create a thread (and so a tenant)."""

_FLOWS: Final = (ops.SweepThreads, FindThreads, EraseSubject, LiftTombstones)
"""The operations that take several round trips (`RedisThreadStore._flow`)."""


@cache
def _client_options() -> frozenset[str]:
    """The query options redis-py accepts in a URL."""
    names = set(URL_QUERY_ARGUMENT_PARSERS)
    for cls in (redis.connection.AbstractConnection, redis.connection.SSLConnection):
        names.update(inspect.signature(cls.__init__).parameters)
    return frozenset(names - {"self", "args", "kwargs", "decode_responses"})


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without memfold's query options, and those options (the rest are redis-py's).

    Examples:
        >>> split_url("redis://h:6379/0?ttl_seconds=60&socket_timeout=5")
        ('redis://h:6379/0?socket_timeout=5', {'ttl_seconds': 60.0})
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise InvalidInput(
            f"RedisThreadStore opens redis://, rediss:// or unix:// URLs, not {url!r}"
        )
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _OPTIONS.get(key)
        if kind is not None:
            try:
                ours[key] = kind(value)
            except ValueError as exc:
                raise InvalidInput(f"redis:// option {key}={value!r} is not a number") from exc
        elif key in _client_options():
            theirs.append((key, value))
        else:
            raise InvalidInput(
                f"unknown redis:// option {key!r}: use {sorted(_OPTIONS)} or a redis-py "
                "connection option such as socket_timeout"
            )
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _where(client: redis.Redis | redis.asyncio.Redis) -> str:
    """Where ``client`` connects, for messages (never its password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _check_bytes(client: redis.Redis | redis.asyncio.Redis) -> None:
    if client.get_encoder().decode_responses:
        raise InvalidInput(
            "memfold stores bytes in Redis: pass a client made with decode_responses=False"
        )


def _translate(exc: RedisError, where: str) -> MemfoldError:
    """The `memfold.errors` error for a redis-py error, saying what to do."""
    if isinstance(exc, ResponseError):
        detail = str(exc)
        refused = erased(detail)
        if refused is not None:  # a tombstone refused the write (see `tombstones.named`)
            return refused
        if detail.startswith("WRONGTYPE"):
            return Conflict(
                f"a key under this key_prefix at Redis {where} holds data memfold did not write: "
                f"use another key_prefix. Redis said: {detail}"
            )
        if detail.startswith("OOM"):
            hint = "Redis is out of memory: raise maxmemory, or set ttl_seconds/max_messages"
        else:
            hint = "Redis refused the command"
        return BackendUnavailable(f"Redis at {where}: {hint}. Redis said: {detail}")
    return BackendUnavailable(
        f"cannot use Redis at {where}: check that the server is running and the URL "
        f"(host, port, password, TLS) is right. Redis said: {exc}"
    )


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """Raise redis-py errors as `memfold.errors` (see `_translate`)."""
    try:
        yield
    except RedisError as exc:
        raise _translate(exc, where) from exc


async def _close_at_shutdown(client: redis.asyncio.Redis) -> AsyncGenerator[None, None]:
    """Parks at ``yield`` until closed, by the store or by the loop's shutdown, then closes
    ``client``."""
    try:
        yield
    finally:
        await client.aclose()


class RedisThreadStore(BaseThreadStore):
    """Threads in plain Redis 7 (no modules): a list of messages per thread, and Lua scripts
    that make every multi-key write atomic.

    Args:
        url: ``redis://[:password@]host:6379/0`` (or ``rediss://``, ``unix://``); its query may
            hold redis-py connection options such as ``socket_timeout`` (`from_url` and
            `memfold.open_store` also take this store's options from it).
        client: a sync ``redis.Redis`` to use instead of one made from ``url``.
        async_client: a ``redis.asyncio.Redis`` to use instead of one made from ``url``.
        key_prefix: the start of every key, so several stores can share one database.
        ttl_seconds: expire a thread this long after its last write (every write restarts it);
            also the retention policy's ``ttl_seconds``.
        max_messages: keep at most this many messages per thread, dropping the oldest; also the
            retention policy's ``keep_last``.
        compress_min_bytes: zstd-compress messages whose JSON is at least this long (None: never).
        retention: what `sweep` removes when called without a policy (see `memfold.retention`);
            ``ttl_seconds`` and ``max_messages`` set its fields of the same meaning.

    Examples:
        >>> store = RedisThreadStore("redis://127.0.0.1:6379/0", ttl_seconds=3600)
        >>> store.capabilities.full_text_search
        False
        >>> RedisThreadStore.from_url("redis://127.0.0.1:6379/0?max_messages=500").max_messages
        500
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        ttl_seconds: float | None = None,
        max_messages: int | None = None,
        compress_min_bytes: int | None = 1024,
        retention: RetentionPolicy | None = None,
    ) -> None:
        if url is not None:
            check_url(url, "a Redis URL")
        if url is None and client is None and async_client is None:
            raise InvalidInput("RedisThreadStore needs a redis:// URL, a client or an async_client")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, int | float)
            or not 0.001 <= ttl_seconds <= MAX_SECONDS
        ):
            raise InvalidInput(
                f"ttl_seconds must be from 0.001 to {MAX_SECONDS:,} (MAX_SECONDS) or None, "
                f"got {ttl_seconds!r}"
            )
        if max_messages is not None and (
            isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1
        ):
            raise InvalidInput(f"max_messages must be a positive int or None, got {max_messages!r}")
        self.key_prefix = check_prefix(key_prefix)
        self.ttl_seconds = ttl_seconds
        self.max_messages = max_messages
        self.codec = ElementCodec(compress_min_bytes=compress_min_bytes)
        ttl_ms = 0 if ttl_seconds is None else max(1, round(ttl_seconds * 1000))
        self._calls = Calls(self.key_prefix, self.codec, ttl_ms, max_messages)
        self._client_url = None if url is None else self._connect_url(url)
        self._given_async = async_client
        for given in (client, async_client):
            if given is not None:
                _check_bytes(given)
        self._owns_client = client is None and self._client_url is not None
        self._client = client
        if self._owns_client and self._client_url is not None:
            self._client = redis.Redis.from_url(self._client_url)
        # One async client per event loop, each with the parked generator that closes it.
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        source = self._client if self._client is not None else async_client
        self._where = "" if source is None else _where(source)
        self._sweeps = ThreadSweeps(self.key_prefix, self.codec)
        self._tenants: set[str] = set()
        self._layout = RedisLayout(
            self, "threads", layout_key(self.key_prefix), LAYOUT_STEPS, scripts.ALL,
            backfill=self._sweeps.backfill,
        )  # fmt: skip
        policy = check_policy(retention or RetentionPolicy())
        if ttl_seconds is not None:
            policy = replace(policy, ttl_seconds=ttl_seconds)
        if max_messages is not None:
            policy = replace(policy, keep_last=max_messages)
        super().__init__(
            Capabilities(persistent=True, shared=True, transactions=True, ttl=True),
            retention=policy,
        )

    @staticmethod
    def _connect_url(url: str) -> str:
        plain, options = split_url(url)
        if options:
            raise InvalidInput(
                f"pass memfold options to RedisThreadStore as keyword arguments, or open the "
                f"URL with memfold.open_store: {sorted(options)}"
            )
        try:
            parse_url(plain)  # type: ignore[no-untyped-call]
        except ValueError as exc:  # a scheme, port, host or option redis-py cannot read
            raise InvalidInput(f"{plain!r} is not a Redis URL: {exc}") from exc
        return plain

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisThreadStore:
        """A store for ``url``, taking memfold's options from its query (``options`` win); the
        query's retention options (``keep_last``, ``max_age_seconds``, ``max_threads``) make
        its ``retention`` policy unless one is given."""
        plain, from_query = split_url(url)
        policy: dict[str, Any] = {
            k: from_query.pop(k) for k in ("keep_last", "max_age_seconds", "max_threads")
            if k in from_query
        }  # fmt: skip
        if policy:
            options = {"retention": policy_from_options(policy), **options}
        return cls(plain, **{**from_query, **options})

    @property
    def client(self) -> redis.Redis:
        """The sync client."""
        if self._client is None:
            raise InvalidInput(
                "this RedisThreadStore was given only an async_client: use the async methods "
                "(aappend, aload, ...), or pass client=redis.Redis(...) or a URL too"
            )
        return self._client

    @property
    def tombstone_place(self) -> Hashable:
        """The tombstone hashes of this server and key prefix (shared by its store kinds)."""
        return "redis", self._where, self.key_prefix

    async def _async_client(self) -> redis.asyncio.Redis:
        """The async client: the one given, or one per event loop made from the URL.

        A client made here is closed in its own loop when the loop shuts down its async
        generators (``asyncio.run`` does), so a store used from many ``asyncio.run`` calls leaves
        no connection open behind a closed loop.
        """
        if self._given_async is not None:
            return self._given_async
        if self._client_url is None:
            raise InvalidInput(
                "this RedisThreadStore was given only a sync client: use the sync methods, "
                "or pass async_client=redis.asyncio.Redis(...) or a URL too"
            )
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)
        if found is None:
            client = redis.asyncio.Redis.from_url(self._client_url)
            closer = _close_at_shutdown(client)
            await closer.asend(None)
            found = self._aclients[loop] = (client, closer)
        return found[0]

    # Drivers: send the call, load the script if the server lacks it, decode the reply.

    def _send(self, call: Call[T]) -> T:
        if not call.command:
            return call.decode(None)
        client = self.client
        send: Callable[..., Any] = client.execute_command
        try:
            reply = send(*call.command)
        except NoScriptError:
            if call.script is None:
                raise
            with _translated(self._where):
                client.script_load(call.script.source)
                reply = send(*call.command)
        except RedisError as exc:
            raise _translate(exc, self._where) from exc
        return call.decode(reply)

    async def _asend(self, call: Call[T]) -> T:
        if not call.command:
            return call.decode(None)
        client = await self._async_client()
        send: Callable[..., Awaitable[Any]] = client.execute_command
        try:
            reply = await send(*call.command)
        except NoScriptError:
            if call.script is None:
                raise
            with _translated(self._where):
                await client.script_load(call.script.source)
                reply = await send(*call.command)
        except RedisError as exc:
            raise _translate(exc, self._where) from exc
        return call.decode(reply)

    def drive(self, flow: Flow[T]) -> T:
        """Run a flow of calls (an operation of several round trips) on the sync client."""
        try:
            call = next(flow)
            while True:
                call = flow.send(self._send(call))
        except StopIteration as done:
            return cast("T", done.value)

    async def adrive(self, flow: Flow[T]) -> T:
        """Async `drive`."""
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._asend(call))
        except StopIteration as done:
            return cast("T", done.value)

    def _flow(self, op: ops.Op[Any]) -> Flow[Any] | None:
        """The flow of an operation of several round trips (a sweep, an erasure), else None."""
        if not isinstance(op, _FLOWS):  # one check on the hot path (appends, loads)
            return None
        match op:
            case ops.SweepThreads():
                return self._sweeps.sweep(op)
            case FindThreads():
                return find_threads(self.key_prefix, op)
            case EraseSubject():
                return erase_threads(self.key_prefix, op)
            case LiftTombstones():
                return lift(self.key_prefix, op)
        return None

    def execute(self, op: ops.Op[T]) -> T:
        """Run one operation in one round trip (a sweep, an erasure, and a tenant's first write
        in this process, take more)."""
        flow = self._flow(op)
        if flow is not None:
            return cast("T", self.drive(flow))
        call = self._calls.build(op)
        if isinstance(op, _CREATING) and op.tenant not in self._tenants:
            self._send(register(self.key_prefix, op.tenant))
            self._tenants.add(op.tenant)
        try:
            return self._send(call)
        except Erased:  # `named` only on a refusal: it costs a generator per use
            with named(op):
                raise

    async def aexecute(self, op: ops.Op[T]) -> T:
        """Run one operation in one round trip on the async client."""
        flow = self._flow(op)
        if flow is not None:
            return cast("T", await self.adrive(flow))
        call = self._calls.build(op)
        if isinstance(op, _CREATING) and op.tenant not in self._tenants:
            await self._asend(register(self.key_prefix, op.tenant))
            self._tenants.add(op.tenant)
        try:
            return await self._asend(call)
        except Erased:
            with named(op):
                raise

    # Setup: record the layout version and load the scripts.

    def claim_layout(self, key: str, version: int, loaded: Sequence[Script]) -> int:
        """Record ``version`` at ``key`` unless a version at least as new is there (atomic, see
        `memfold.backends.redis.layout`) and load the ``loaded`` scripts, in one round trip;
        returns the version found (0: none)."""
        with _translated(self._where):
            pipe = self.client.pipeline(transaction=False)
            pipe.eval(UPGRADE.source, 1, key, version)
            for script in loaded:
                pipe.script_load(script.source)
            found = pipe.execute()[0]
        return int(found)

    async def aclaim_layout(self, key: str, version: int, loaded: Sequence[Script]) -> int:
        """Async `claim_layout`."""
        with _translated(self._where):
            pipe = (await self._async_client()).pipeline(transaction=False)
            pipe.eval(UPGRADE.source, 1, key, version)
            for script in loaded:
                pipe.script_load(script.source)
            found = (await pipe.execute())[0]
        return int(found)

    def schema_steps(self) -> list[SchemaSteps]:
        """The thread key layout's steps."""
        return [self._layout]

    def close(self) -> None:
        """Close the clients this store made (clients you passed in stay open).

        Async clients are closed by `aclose`, in their event loop.
        """
        if self._owns_client and self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the clients this store made, the async one of this event loop included."""
        found = self._aclients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[1].aclose()
        self.close()
