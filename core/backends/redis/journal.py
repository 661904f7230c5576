"""The effect journal on Redis: a hash among the checkpoint thread's own keys; pure, no I/O.

The Redis checkpoint store (`memfold.backends.redis.checkpoint_store`) runs the journal
operations with the calls built here. A thread's journal is its key ``j`` (see
`memfold.backends.redis.checkpoint_keys`): it maps ``<namespace>:<tool_call_id>`` (both escaped)
to ``<recorded µs>:<tag>:<bytes>``, or ``<recorded µs>@<origin>:<tag>:<bytes>`` for an entry
that names the checkpoint its step ran from (all escaped but the bytes). Being one of the
thread's keys, it is deleted with the thread (``delete_thread``, ``prune(strategy="delete")``,
a sweep), copied by ``copy_thread``, and expires with the thread's TTL. A record is one script
(``HSETNX`` then ``HGET``), atomic and insert-if-absent; a replacement (key rotation) is one
script that rewrites an entry only if it is there, keeping its time, its origin and its hash's
TTL.

Examples:
    >>> from memfold.backends.redis.checkpoint_keys import checkpoint_keys
    >>> from memfold.journal import GetEffect
    >>> keys = checkpoint_keys("m:", "acme", "t:1")
    >>> journal_call(GetEffect("acme", "t:1", "", "c1"), keys, 0).command
    ('HGET', 'm:{acme}:c:t%3A1:j', ':c1')
"""

from __future__ import annotations

from functools import partial
from typing import Any

from memfold.backends.redis import checkpoint_scripts as scripts
from memfold.backends.redis.calls import Call, Flow
from memfold.backends.redis.checkpoint_keys import CheckpointKeys, from_micros, micros
from memfold.backends.redis.erasure import scan
from memfold.backends.redis.keys import escape, unescape
from memfold.backends.redis.scripts import Script
from memfold.checkpoint_model import Blob
from memfold.errors import InvalidInput
from memfold.journal import (
    DeleteEffects,
    GetEffect,
    JournalEntry,
    ListEffects,
    RecordEffect,
    ReplaceEffect,
    sort_key,
)
from memfold.ops import Op

__all__ = ["REPLACE_EFFECT", "journal_call", "journal_threads"]

REPLACE_EFFECT = Script(
    r"""
-- KEYS: the journal; ARGV: the entry's field, its new tag and bytes (``tag:bytes``). Rewrites
-- the entry unless it is gone, keeping its recorded time and origin; returns 1 if it did.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.match(old, '^[^:]*:') .. ARGV[2])
return 1
"""
)


def _field(namespace: str, tool_call_id: str) -> str:
    return f"{escape(namespace)}:{escape(tool_call_id)}"


def _pack(op: RecordEffect) -> bytes:
    stamp = f"{micros(op.recorded_at)}@{escape(op.origin)}" if op.origin else micros(op.recorded_at)
    return f"{stamp}:{escape(op.value.tag)}:".encode() + op.value.data


def _packed_value(op: ReplaceEffect) -> bytes:
    return f"{escape(op.value.tag)}:".encode() + op.value.data


def _entry(thread_id: str, namespace: str, tool_call_id: str, packed: bytes) -> JournalEntry:
    stamp, tag, data = packed.split(b":", 2)
    recorded_us, _, origin = stamp.partition(b"@")
    return JournalEntry(
        thread_id,
        namespace,
        tool_call_id,
        Blob(unescape(tag), data),
        from_micros(recorded_us),
        unescape(origin),
    )


def _found(
    thread_id: str, namespace: str, tool_call_id: str, packed: bytes | None
) -> JournalEntry | None:
    return None if packed is None else _entry(thread_id, namespace, tool_call_id, packed)


def _entries(op: ListEffects, reply: Any) -> list[JournalEntry]:
    found = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    entries = []
    for field, packed in found:
        ns, call_id = (unescape(part) for part in field.split(b":", 1))
        if op.namespace in (None, ns) and op.tool_call_id in (None, call_id):
            entries.append(_entry(op.thread_id, ns, call_id, packed))
    return sorted(entries, key=sort_key)


def _script(script: Script, keys: CheckpointKeys, *args: str | bytes | int) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys.all), *keys.all, *args)


def journal_call(op: Op[Any], keys: CheckpointKeys, default_ttl_ms: int) -> Call[Any]:
    """The one call that runs journal operation ``op`` on the thread whose keys are ``keys``
    (a new journal expires after ``default_ttl_ms`` if the thread has no checkpoint yet)."""
    match op:
        case RecordEffect():
            field = _field(op.namespace, op.tool_call_id)
            return Call(
                _script(scripts.RECORD_EFFECT, keys, field, _pack(op), default_ttl_ms, keys.member),
                partial(_entry, op.thread_id, op.namespace, op.tool_call_id),
                scripts.RECORD_EFFECT,
            )
        case ReplaceEffect():
            field = _field(op.namespace, op.tool_call_id)
            command = ("EVALSHA", REPLACE_EFFECT.sha, 1, keys.journal, field, _packed_value(op))
            return Call(command, bool, REPLACE_EFFECT)
        case GetEffect():
            return Call(
                ("HGET", keys.journal, _field(op.namespace, op.tool_call_id)),
                partial(_found, op.thread_id, op.namespace, op.tool_call_id),
            )
        case ListEffects():
            return Call(("HGETALL", keys.journal), partial(_entries, op))
        case DeleteEffects():
            return Call(_script(scripts.DELETE_EFFECTS, keys), int, scripts.DELETE_EFFECTS)
    raise InvalidInput(f"the Redis journal cannot run {type(op).__name__}")


def journal_threads(key_prefix: str, tenant: str) -> Flow[list[str]]:
    """The ids of ``tenant``'s threads that have a journal, sorted: one ``SCAN`` of the tenant's
    checkpoint keys (a thread with a journal and no checkpoint is in no index)."""
    base = f"{key_prefix}{{{escape(tenant)}}}:c:"
    found: set[str] = set()
    for key in (yield from scan(base)):
        name, _, part = key.decode()[len(base) :].rpartition(":")
        if part == "j" and name and ":" not in name:  # a thread's own key: escaped name, part
            found.add(unescape(name))
    return sorted(found)
