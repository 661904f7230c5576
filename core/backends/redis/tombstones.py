"""Tombstones on Redis: one hash per tenant, read by every write script that could bring erased
data back.

For key prefix ``P`` and tenant ``T`` (escaped, see `memfold.backends.redis.keys`), the hash
``P{T}:erased`` maps a field per tombstone (see `memfold.tombstones`) to
``<expires µs, 0 for never>,<erased µs>,<subject>``:

- ``t:`` the whole tenant;
- ``h:<thread id, escaped>`` one thread (its messages, metadata, checkpoints, pending writes
  and journal);
- ``u:<user id>`` the memory namespaces ``(T, user id, ...)``.

The thread, checkpoint and memory stores under one key prefix share the hash, as the SQL stores
share their table, and it sits in the tenant's hash tag, so a write script reads it in the same
atomic step as the keys it writes (the Lua helper is `memfold.backends.redis.scripts.TOMBSTONED`).
A refused thread or checkpoint write fails with an error starting with
`memfold.tombstones.ERASED_MARK`, which `named` turns into `memfold.errors.Erased` naming the
thread. Tombstones hold identifiers only, never content.

Examples:
    >>> from datetime import UTC, datetime
    >>> from memfold.tombstones import Tombstone
    >>> stone = Tombstone("acme", "thread", "t:1", "ann", datetime(2026, 1, 1, tzinfo=UTC))
    >>> stone_field(stone), stone_value(stone)
    ('h:t%3A1', '0,1767225600000000,ann')
    >>> decode_stone("acme", b"h:t%3A1", b"0,1767225600000000,ann") == stone
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from memfold.backends.redis.calls import Call, Flow, same
from memfold.backends.redis.checkpoint_keys import from_micros, micros
from memfold.backends.redis.keys import escape, tombstone_key, unescape
from memfold.backends.redis.scripts import Script
from memfold.checkpoint_ops import CopyCheckpointThread
from memfold.errors import Erased
from memfold.ops import Op
from memfold.tombstones import (
    TENANT,
    THREAD,
    USER,
    Kind,
    LiftTombstones,
    Tombstone,
    lifted,
    thread_erased,
)

__all__ = ["LIFT", "decode_stone", "lift", "named", "place", "stone_field", "stone_value"]

_PREFIXES: Final[dict[str, Kind]] = {"t": TENANT, "h": THREAD, "u": USER}

LIFT: Final = Script(
    """
-- KEYS[1]: a tenant's tombstones; ARGV: field, value pairs. Removes each field that still
-- holds that value (a tombstone placed again since stays); returns the fields removed.
local gone = {}
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
"""
)


def stone_field(stone: Tombstone) -> str:
    """The field of ``stone`` in its tenant's hash."""
    if stone.kind == TENANT:
        return "t:"
    if stone.kind == THREAD:
        return "h:" + escape(stone.name)
    return "u:" + stone.name


def stone_value(stone: Tombstone) -> str:
    """What the hash holds for ``stone``: its expiry first, for the scripts to read."""
    expires = 0 if stone.expires_at is None else micros(stone.expires_at)
    return f"{expires},{micros(stone.erased_at)},{stone.subject}"


def decode_stone(tenant: str, field: bytes, value: bytes) -> Tombstone:
    """The tombstone a field and value of ``tenant``'s hash hold."""
    kind, _, name = field.decode().partition(":")
    expires, erased_at, subject = value.decode().split(",", 2)
    return Tombstone(
        tenant,
        _PREFIXES[kind],
        unescape(name) if kind == "h" else name,
        subject,
        from_micros(erased_at),
        None if expires == "0" else from_micros(expires),
    )


def place(prefix: str, tenant: str, stones: Sequence[Tombstone]) -> Flow[None]:
    """Record ``stones`` in ``tenant``'s hash (replacing those with the same field), in one
    command."""
    if stones:
        pairs = [part for s in stones for part in (stone_field(s), stone_value(s))]
        yield Call(("HSET", tombstone_key(prefix, tenant), *pairs), same)


def _pairs(reply: Any) -> list[tuple[bytes, bytes]]:
    if isinstance(reply, dict):
        return list(reply.items())
    return list(zip(reply[::2], reply[1::2], strict=True))


def lift(prefix: str, op: LiftTombstones) -> Flow[int]:
    """Remove the tombstones ``op`` lifts; returns how many live ones went."""
    key = tombstone_key(prefix, op.tenant)
    doomed: dict[bytes, tuple[bytes, Tombstone]] = {}
    for field, value in _pairs((yield Call(("HGETALL", key), same))):
        stone = decode_stone(op.tenant, field, value)
        if lifted(stone, op):
            doomed[field] = (value, stone)
    if not doomed:
        return 0
    args = [part for field, (value, _) in doomed.items() for part in (field, value)]
    gone = yield Call(("EVALSHA", LIFT.sha, 1, key, *args), same, LIFT)
    return sum(doomed[field][1].live(op.now) for field in gone)


@contextmanager
def named(op: Op[Any]) -> Iterator[None]:
    """Re-raise a write script's refusal as `Erased` naming the thread ``op`` wrote to."""
    try:
        yield
    except Erased:
        if isinstance(op, CopyCheckpointThread):
            raise thread_erased(op.tenant, op.target) from None
        tenant, thread_id = getattr(op, "tenant", None), getattr(op, "thread_id", None)
        if isinstance(tenant, str) and isinstance(thread_id, str):
            raise thread_erased(tenant, thread_id) from None
        raise
