"""Erasure on Redis: the `memfold.tombstones` operations of the thread, checkpoint and memory
stores, as flows of calls (pure, no I/O; each store's driver runs them).

- `FindThreads` reads the tenant's thread index, then checks the metadata of its threads in
  batches, one script each (Lua's ``cjson`` decodes the metadata that mentions ``user_id``).
- `EraseSubject` first places the tombstones (one ``HSET``), so from then on every write script
  refuses a late write to what is being erased; then the data goes. Named threads go in
  batches, one script each that counts and deletes whole threads (so a thread is never left
  half-deleted). A whole tenant's keys are found with ``SCAN`` over the tenant's key prefix
  (its indexes may miss keys left by an interrupted write) once its tombstone is placed, so the
  set scanned cannot grow; memories go by namespace prefix, through the tenant's namespace
  index. The tenant stays in the sets of tenants that sweeps go through (an identifier, as in
  its tombstone). A dry run counts with the same scripts and changes nothing.
- `LiftTombstones` is `memfold.backends.redis.tombstones.lift`.

Examples:
    >>> glob("memfold:{a*b}:t:")
    'memfold:{a\\\\*b}:t:*'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from memfold.backends.redis.calls import Call, Flow, same
from memfold.backends.redis.checkpoint_keys import run_base, tenant_indexes, tenant_threads
from memfold.backends.redis.keys import escape, tenant_base, tenant_index, tenant_keys, unescape
from memfold.backends.redis.scripts import Script
from memfold.backends.redis.tombstones import place
from memfold.memories import namespace_key, prefix_range
from memfold.tombstones import EraseSubject, ErasureCounts, FindThreads

__all__ = [
    "checkpoint_base",
    "erase_checkpoints",
    "erase_memories",
    "erase_threads",
    "find_checkpoint_threads",
    "find_threads",
    "glob",
    "scan",
]

BATCH: Final = 200
"""Threads per script: each script runs alone in Redis, so a batch bounds how long it blocks."""

_USER_OF = """
-- Whether JSON text `meta` is an object whose "user_id" is the string `user`.
local function belongs(meta, user)
  if not string.find(meta, '"user_id"', 1, true) then return false end
  local ok, value = pcall(cjson.decode, meta)
  return ok and type(value) == 'table' and value.user_id == user
end
"""

FIND_THREADS: Final = Script(
    _USER_OF
    + """
-- ARGV: the tenant's thread key base, a user id, then thread members. Returns the members whose
-- thread metadata names that user.
local found = {}
for i = 3, #ARGV do
  local meta = redis.call('HGET', ARGV[1] .. ARGV[i] .. ':h', 'm')
  if meta and belongs(meta, ARGV[2]) then found[#found + 1] = ARGV[i] end
end
return found
"""
)

FIND_CHECKPOINT_THREADS: Final = Script(
    _USER_OF
    + """
-- ARGV: the tenant's checkpoint key base, a user id, then thread members. Returns the members
-- with a checkpoint whose metadata names that user.
local found = {}
for i = 3, #ARGV do
  for _, meta in ipairs(redis.call('HVALS', ARGV[1] .. ARGV[i] .. ':m')) do
    if belongs(meta, ARGV[2]) then
      found[#found + 1] = ARGV[i]
      break
    end
  end
end
return found
"""
)

ERASE_THREADS: Final = Script(
    """
-- KEYS: the tenant's thread indexes (`TenantKeys.all`); ARGV: the tenant's thread key base, '1'
-- for a dry run, then thread members. Deletes those threads, from the indexes too (a dry run
-- only counts); returns {threads, messages} they held.
local threads, messages = 0, 0
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local count = redis.call('LLEN', key .. ':m')
  if count > 0 or redis.call('EXISTS', key .. ':h') == 1 then
    threads = threads + 1
    messages = messages + count
  end
  if ARGV[2] ~= '1' then
    redis.call('DEL', key .. ':m', key .. ':i', key .. ':h')
    for k = 1, #KEYS do redis.call('ZREM', KEYS[k], ARGV[i]) end
  end
end
return {threads, messages}
"""
)

ERASE_CHECKPOINTS: Final = Script(
    """
-- KEYS: the tenant's checkpoint thread indexes (`TenantIndexes.all`); ARGV: the tenant's
-- checkpoint key base, its run-index key base, '1' for a dry run, then thread members. Deletes
-- those threads' keys (the journal included) and their entries in the run and thread indexes
-- (a dry run only counts); returns
-- {threads, checkpoints, pending writes, value rows, journal entries} they held.
local counts = {0, 0, 0, 0, 0}
for i = 4, #ARGV do
  local key = ARGV[1] .. ARGV[i] .. ':'
  counts[1] = counts[1] + redis.call('EXISTS', key .. 'h')
  counts[2] = counts[2] + redis.call('ZCARD', key .. 'i')
  counts[3] = counts[3] + redis.call('HLEN', key .. 'w')
  counts[4] = counts[4] + redis.call('HLEN', key .. 'p')
  counts[5] = counts[5] + redis.call('HLEN', key .. 'j')
  if ARGV[3] ~= '1' then
    for _, run in ipairs(redis.call('SMEMBERS', key .. 'u')) do
      redis.call('SREM', ARGV[2] .. run, ARGV[i])
    end
    for part in string.gmatch('hiarmkbpxwuj', '.') do redis.call('DEL', key .. part) end
    for _, index in ipairs(KEYS) do redis.call('ZREM', index, ARGV[i]) end
  end
end
return counts
"""
)

ERASE_MEMORIES: Final = Script(
    """
-- KEYS: the tenant's namespace, expiry, age and size indexes. ARGV: the tenant's record key base,
-- low, high, '1' for a dry run. Deletes the records of every namespace key from low
-- (inclusive) to high (exclusive) (a dry run only counts); returns how many there were.
local count = 0
for _, ns in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '(' .. ARGV[3])) do
  local key = ARGV[1] .. ns
  local ids = redis.call('HKEYS', key)
  count = count + #ids
  if ARGV[4] ~= '1' then
    for j = 1, #ids, 1000 do
      local members = {}
      for k = j, math.min(j + 999, #ids) do members[#members + 1] = ns .. ids[k] end
      redis.call('ZREM', KEYS[2], unpack(members))
      redis.call('ZREM', KEYS[3], unpack(members))
    end
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], ns)
    redis.call('ZREM', KEYS[4], ns)
  end
end
return count
"""
)


def glob(prefix: str) -> str:
    """A ``SCAN MATCH`` pattern for every key starting with ``prefix``."""
    for special in "\\*?[]":
        prefix = prefix.replace(special, "\\" + special)
    return prefix + "*"


def scan(prefix: str) -> Flow[list[bytes]]:
    """Every key starting with ``prefix`` (``SCAN``, never ``KEYS``: Redis keeps serving)."""
    found: list[bytes] = []
    cursor = 0
    while True:
        cursor, keys = yield Call(("SCAN", cursor, "MATCH", glob(prefix), "COUNT", 1000), same)
        found += keys
        if int(cursor) == 0:
            return found


def _batches(items: Sequence[bytes | str]) -> Iterable[Sequence[bytes | str]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _find(script: Script, base: str, index: str, user_id: str) -> Flow[list[str]]:
    members = yield Call(("ZRANGE", index, 0, -1), same)
    found: list[str] = []
    for batch in _batches(members):
        reply = yield Call(("EVALSHA", script.sha, 0, base, user_id, *batch), same, script)
        found += (unescape(m) for m in reply)
    return sorted(found)


def find_threads(prefix: str, op: FindThreads) -> Flow[list[str]]:
    """The thread store's `FindThreads`."""
    index = tenant_index(prefix, op.tenant)
    return (yield from _find(FIND_THREADS, tenant_base(prefix, op.tenant), index, op.user_id))


def checkpoint_base(prefix: str, tenant: str) -> str:
    """The start of every key of ``tenant``'s checkpoint threads, run indexes and index."""
    return f"{prefix}{{{escape(tenant)}}}:c:"


def find_checkpoint_threads(prefix: str, op: FindThreads) -> Flow[list[str]]:
    """The checkpoint store's `FindThreads`."""
    base, index = checkpoint_base(prefix, op.tenant), tenant_threads(prefix, op.tenant)
    return (yield from _find(FIND_CHECKPOINT_THREADS, base, index, op.user_id))


def _members(
    op: EraseSubject, base: str, index: str, parse: dict[bytes, bytes]
) -> Flow[list[bytes | str]]:
    """The members to erase: the named threads, or every thread of the tenant (its index's,
    and those its keys name: ``parse`` maps each key found to its thread's member)."""
    if not op.whole_tenant:
        return [escape(t) for t in op.thread_ids]
    members: dict[bytes, None] = dict.fromkeys((yield Call(("ZRANGE", index, 0, -1), same)))
    members.update(dict.fromkeys(parse.values()))
    return sorted(members)


def _thread_member(base: bytes, key: bytes) -> bytes | None:
    """The member of the thread whose key ``key`` is (``base`` + member + ``:`` + a letter)."""
    rest = key[len(base) :]
    member, colon, part = rest.rpartition(b":")
    return member if colon and len(part) == 1 and b":" not in member else None


def erase_threads(prefix: str, op: EraseSubject) -> Flow[ErasureCounts]:
    """The thread store's `EraseSubject`."""
    if not op.dry_run:
        yield from place(prefix, op.tenant, op.tombstones)
    tenant = tenant_keys(prefix, op.tenant)
    base, indexes = tenant.base, tenant.all
    found: dict[bytes, bytes] = {}
    if op.whole_tenant:
        for key in (yield from scan(base)):
            member = _thread_member(base.encode(), key)
            if member is not None:
                found[key] = member
    members = yield from _members(op, base, tenant.index, found)
    threads = messages = 0
    for batch in _batches(members):
        command = ("EVALSHA", ERASE_THREADS.sha, len(indexes), *indexes, base, int(op.dry_run))
        counted, listed = yield Call((*command, *batch), same, ERASE_THREADS)
        threads, messages = threads + counted, messages + listed
    if op.whole_tenant and not op.dry_run:
        yield Call(("DEL", *indexes), same)
    return ErasureCounts(threads=threads, messages=messages)


def erase_checkpoints(prefix: str, op: EraseSubject) -> Flow[ErasureCounts]:
    """The checkpoint store's `EraseSubject` (the effect journal is among a thread's keys)."""
    if not op.dry_run:
        yield from place(prefix, op.tenant, op.tombstones)
    base, index = checkpoint_base(prefix, op.tenant), tenant_threads(prefix, op.tenant)
    runs = run_base(prefix, op.tenant)
    found: dict[bytes, bytes] = {}
    others: list[bytes] = []  # the run indexes (a thread named "run" lands here too)
    if op.whole_tenant:
        for key in (yield from scan(base)):
            member = None if key.startswith(runs.encode()) else _thread_member(base.encode(), key)
            if member is not None:
                found[key] = member
            elif key != index.encode():
                others.append(key)
    members = yield from _members(op, base, index, found)
    counts = [0, 0, 0, 0, 0]
    for batch in _batches(members):
        indexes = tenant_indexes(prefix, op.tenant).all
        command = ("EVALSHA", ERASE_CHECKPOINTS.sha, len(indexes), *indexes, base, runs,
                   int(op.dry_run), *batch)  # fmt: skip
        reply = yield Call(command, same, ERASE_CHECKPOINTS)
        counts = [a + int(b) for a, b in zip(counts, reply, strict=True)]
    if op.whole_tenant and not op.dry_run:
        for start in range(0, len(others), 1000):
            yield Call(("DEL", *others[start : start + 1000]), same)
        yield Call(("DEL", index), same)
    threads, checkpoints, writes, rows, journal = counts
    return ErasureCounts(
        checkpoint_threads=threads,
        checkpoints=checkpoints,
        checkpoint_writes=writes,
        checkpoint_blobs=rows,
        journal_entries=journal,
    )


def erase_memories(prefix: str, op: EraseSubject) -> Flow[ErasureCounts]:
    """The memory store's `EraseSubject`: the records under ``(tenant,)`` or
    ``(tenant, user_id)``; for a whole tenant, every key of its memories goes too."""
    wanted = op.memory_prefix
    if wanted is None:
        return ErasureCounts()
    if not op.dry_run:
        yield from place(prefix, op.tenant, op.tombstones)
    tenant = f"{prefix}{{{escape(op.tenant)}}}"
    low, high = prefix_range(namespace_key(wanted))
    keys = (f"{tenant}:mns", f"{tenant}:mexp", f"{tenant}:mage", f"{tenant}:msize")
    command = ("EVALSHA", ERASE_MEMORIES.sha, len(keys), *keys, f"{tenant}:mr:", low, high,
               int(op.dry_run))  # fmt: skip
    count = yield Call(command, same, ERASE_MEMORIES)
    if op.whole_tenant and not op.dry_run:
        left: list[bytes | str] = [*(yield from scan(f"{tenant}:mr:")), *keys]
        for start in range(0, len(left), 1000):
            yield Call(("DEL", *left[start : start + 1000]), same)
    return ErasureCounts(memories=int(count))
