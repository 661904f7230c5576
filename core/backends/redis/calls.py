"""Each operation as one Redis command and a decoder for its reply: pure, no I/O.

Every operation is a single round trip (one ``EVALSHA`` for anything that touches several keys,
a plain command otherwise), so the sync and async drivers in `memfold.backends.redis.store`
only send `Call.command` and hand the reply to `Call.decode`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar, cast

from memfold import ops
from memfold.backends.redis import scripts
from memfold.backends.redis.checkpoint_keys import micros
from memfold.backends.redis.elements import ElementCodec
from memfold.backends.redis.keys import (
    ThreadKeys,
    tenant_base,
    tenant_index,
    tenant_keys,
    thread_keys,
    unescape,
)
from memfold.errors import Conflict, InvalidInput, NotFound, UnsupportedOperation
from memfold.model import Message, ThreadInfo
from memfold.stores import not_following

__all__ = ["Call", "Calls", "Flow", "same"]

T = TypeVar("T")

Arg: TypeAlias = str | bytes | int
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Call(NamedTuple, Generic[T]):
    """One command to send (none when the answer is known without asking), the script it
    runs (if any), and how to read its reply (a named tuple: every operation builds one, and
    a tuple is built in half the time of a frozen dataclass)."""

    command: tuple[Arg, ...]
    decode: Callable[[Any], T]
    script: scripts.Script | None = None


Flow: TypeAlias = Generator[Call[Any], Any, T]
"""An operation as the Redis calls it makes: each yielded call's reply is sent back in."""


def same(reply: Any) -> Any:
    """A reply as it came (the decoder of a call whose reply needs none)."""
    return reply


def _evalsha(script: scripts.Script, keys: tuple[str, ...], *args: Arg) -> tuple[Arg, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _time(micros: bytes | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _info(tenant: str, thread_id: str, row: list[Any]) -> ThreadInfo:
    created, updated, metadata, count = row
    return ThreadInfo(
        thread_id, tenant, _time(created), _time(updated), count, json.loads(metadata)
    )


def _seconds(reply: bytes | float | None) -> float | None:
    return None if reply is None else float(reply)


class Calls:
    """Builds the `Call` for each operation on one key prefix with one store's settings."""

    def __init__(
        self, prefix: str, codec: ElementCodec, ttl_ms: int, max_messages: int | None
    ) -> None:
        self.prefix = prefix
        self.codec = codec
        self.ttl = ttl_ms
        self.cap = max_messages or 0

    def build(self, op: ops.Op[T]) -> Call[T]:
        """The call that runs ``op``."""
        call: Call[Any]
        if isinstance(op, ops.AppendMessages):  # the hot path: one check instead of a match
            call = self._append(op.tenant, op.thread_id, op.messages, op.bodies, follows=op.follows)
            return cast("Call[T]", call)
        match op:
            case ops.ReplaceThread(tenant, thread_id, messages, bodies):
                call = self._append(tenant, thread_id, messages, bodies, replace=True)
            case ops.UpdateMessages():
                call = self._update(op)
            case ops.DeleteMessages():
                call = self._delete_messages(op)
            case ops.ScrubSearchIndex():
                call = Call((), lambda _reply: None)  # no search index
            case ops.LoadThread():
                call = self._load(op)
            case ops.CountMessages(tenant, thread_id):
                call = Call(("LLEN", thread_keys(self.prefix, tenant, thread_id).messages), int)
            case ops.GetThread(tenant, thread_id):
                call = self._get(tenant, thread_id)
            case ops.ListThreads():
                call = self._list(op)
            case ops.SetThreadMetadata():
                call = self._metadata(op)
            case ops.RestoreThread():
                call = self._restore(op)
            case ops.ClearThread(tenant, thread_id):
                keys = thread_keys(self.prefix, tenant, thread_id)
                call = self._write(scripts.CLEAR, keys, decode=int)
            case ops.DeleteThread(tenant, thread_id):
                keys = thread_keys(self.prefix, tenant, thread_id)
                command = _evalsha(scripts.DELETE_THREAD, keys.all, keys.member)
                call = Call(command, bool, scripts.DELETE_THREAD)
            case ops.ClearTenant(tenant):
                t = tenant_keys(self.prefix, tenant)
                command = _evalsha(scripts.CLEAR_TENANT, t.all, t.base)
                call = Call(command, int, scripts.CLEAR_TENANT)
            case ops.GetThreadTTL(tenant, thread_id):
                keys = thread_keys(self.prefix, tenant, thread_id)
                call = Call(("ZSCORE", keys.ttls, keys.member), _seconds)
            case ops.SetThreadTTL(tenant, thread_id, ttl_seconds):
                keys = thread_keys(self.prefix, tenant, thread_id)
                ttl = "" if ttl_seconds is None else repr(ttl_seconds)
                command = _evalsha(scripts.SET_TTL, (keys.info, keys.ttls), keys.member, ttl)
                call = Call(command, bool, scripts.SET_TTL)
            case ops.SearchMessages():
                raise UnsupportedOperation(
                    "the redis backend has no full-text search (plain Redis has no index for "
                    "it): check store.capabilities.full_text_search, or search an SQL store"
                )
            case _:
                raise InvalidInput(f"the redis backend cannot run {type(op).__name__}")
        return cast("Call[T]", call)

    def _write(
        self, script: scripts.Script, keys: ThreadKeys, *args: Arg, decode: Callable[[Any], T]
    ) -> Call[T]:
        """A write script's call: it takes the thread's list as its one key (`scripts`)."""
        command = ("EVALSHA", script.sha, 1, keys.messages, keys.member, self.ttl, *args)
        return Call(command, decode, script)

    def _append(
        self,
        tenant: str,
        thread_id: str,
        messages: tuple[Message, ...],
        bodies: tuple[str, ...],
        *,
        replace: bool = False,
        follows: str | None = None,
    ) -> Call[None]:
        keys = thread_keys(self.prefix, tenant, thread_id)
        encode = self.codec.encode
        head = ("EVALSHA", scripts.APPEND.sha, 1, keys.messages, keys.member, self.ttl, self.cap)
        command: tuple[Arg, ...]
        if len(messages) == 1 and not replace and follows is None:  # the hot path
            m = messages[0]
            command = (*head, 0, "", m.id or "", encode(m, bodies[0]))
        else:
            pairs: list[Arg] = []
            for m, body in zip(messages, bodies, strict=True):
                pairs += (m.id or "", encode(m, body))
            command = (*head, int(replace), "" if follows is None else "=" + follows, *pairs)

        def decode(reply: bytes | list[bytes] | None) -> None:
            if isinstance(reply, list):
                raise not_following(thread_id, follows or "", reply[0].decode())
            if reply is not None:
                raise Conflict(
                    f"message id {reply.decode()!r} is already in thread {thread_id!r}: "
                    "append new messages with new ids (or leave id empty to have one assigned)"
                )

        return Call(command, decode, scripts.APPEND)

    def _update(self, op: ops.UpdateMessages) -> Call[None]:
        keys = thread_keys(self.prefix, op.tenant, op.thread_id)
        pairs: list[Arg] = []
        for m, body in zip(op.messages, op.bodies, strict=True):
            pairs += (m.id or "", self.codec.encode(m, body))

        def decode(reply: bytes | None) -> None:
            if reply is not None:
                raise NotFound(
                    f"no message {reply.decode()!r} in thread {op.thread_id!r}: nothing changed"
                )

        keep = "1" if op.keep_times else ""
        return self._write(scripts.UPDATE, keys, keep, *pairs, decode=decode)

    def _delete_messages(self, op: ops.DeleteMessages) -> Call[list[Message]]:
        keys = thread_keys(self.prefix, op.tenant, op.thread_id)
        if not op.message_ids:
            return Call((), lambda _reply: [])
        return self._write(
            scripts.DELETE_MESSAGES, keys, *op.message_ids, decode=self.codec.decode_all
        )

    def _load(self, op: ops.LoadThread) -> Call[list[Message]]:
        keys = thread_keys(self.prefix, op.tenant, op.thread_id)
        if op.before is None:
            if op.last == 0:
                return Call((), lambda _reply: [])
            start = 0 if op.last is None else -op.last
            return Call(("LRANGE", keys.messages, start, -1), self.codec.decode_all)

        def decode(reply: list[bytes] | None) -> list[Message]:
            if reply is None:
                raise NotFound(f"no message {op.before!r} in thread {op.thread_id!r}")
            return self.codec.decode_all(reply)

        last = -1 if op.last is None else op.last
        command = _evalsha(
            scripts.LOAD_BEFORE, (keys.messages, keys.ids, keys.info), op.before, last
        )
        return Call(command, decode, scripts.LOAD_BEFORE)

    def _get(self, tenant: str, thread_id: str) -> Call[ThreadInfo]:
        keys = thread_keys(self.prefix, tenant, thread_id)

        def decode(reply: list[Any] | None) -> ThreadInfo:
            if reply is None:
                raise NotFound(f"no thread {thread_id!r} for tenant {tenant!r}")
            return _info(tenant, thread_id, reply)

        command = _evalsha(scripts.GET, (keys.info, keys.messages, keys.index), keys.member)
        return Call(command, decode, scripts.GET)

    def _list(self, op: ops.ListThreads) -> Call[list[ThreadInfo]]:
        index, base = tenant_index(self.prefix, op.tenant), tenant_base(self.prefix, op.tenant)

        def decode(reply: list[Any]) -> list[ThreadInfo]:
            return [
                _info(op.tenant, unescape(reply[i]), reply[i + 1 : i + 5])
                for i in range(0, len(reply), 5)
            ]

        command = _evalsha(scripts.LIST, (index,), base, op.offset, op.limit)
        return Call(command, decode, scripts.LIST)

    def _restore(self, op: ops.RestoreThread) -> Call[ThreadInfo]:
        keys = thread_keys(self.prefix, op.tenant, op.thread_id)
        return self._write(
            scripts.RESTORE,
            keys,
            op.encoded,
            micros(op.created_at),
            micros(op.updated_at),
            decode=lambda row: _info(op.tenant, op.thread_id, row),
        )

    def _metadata(self, op: ops.SetThreadMetadata) -> Call[ThreadInfo]:
        keys = thread_keys(self.prefix, op.tenant, op.thread_id)
        return self._write(
            scripts.SET_METADATA,
            keys,
            op.encoded,
            decode=lambda row: _info(op.tenant, op.thread_id, row),
        )
