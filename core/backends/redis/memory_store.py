"""The Redis memory store (``redis://``): long-term memory records and TTLs on plain Redis 7.

Plain Redis has no vector or ranked full-text index (those need the search module), so this
store declares neither capability: ``search`` raises `memfold.errors.UnsupportedOperation`,
while put, get, delete, ``delete_where``, ``list_records``, ``count``, filters, namespaces, TTL,
capacity and ``sweep`` all work. Filters are the core's predicate
(`memfold.recall.filters.Filter.matches`) over the records under the prefix.

For key prefix ``P`` and tenant ``T`` (escaped, `memfold.backends.redis.keys.escape`)::

    P{T}:mr:<namespace key>   hash: record id -> record (a header the scripts read, then JSON)
    P{T}:mns                  sorted set: the tenant's namespace keys (lexical prefix ranges)
    P{T}:mexp                 sorted set: namespace key + id -> expiry (µs), for sweeps
    P{T}:mage                 sorted set: namespace key + id -> creation time (µs), for sweeps
    P{T}:msize                sorted set: namespace key -> how many records it holds, for sweeps
    P{T}:erased               hash: the tenant's tombstones (`memfold.backends.redis.tombstones`)
    Pmtenants                 set: tenants with records, for sweeps
    Pm:layout                 the layout version, written by ``setup()``

A record is ``created,expires,importance,used,ttl,`` (µs integers; expires and ttl 0 for none)
followed by the JSON ``[text, model, updated, ttl_seconds, value]``. Every write is one Lua
script (atomic): an upsert keeps the creation time of a live record, a touch rewrites only the
header, and a full namespace evicts its least important, then least recently used records. A
put under an erased tenant or user (a tombstone names it) writes nothing and raises
`memfold.errors.Erased`.

Examples:
    >>> import uuid
    >>> store = RedisMemoryStore("redis://127.0.0.1:6379/0",
    ...                          key_prefix=f"doctest-{uuid.uuid4().hex}:")
    >>> store.setup()
    3
    >>> _ = store.put(("acme", "u1"), "likes tea", {"kind": "pref"}, id="m1", ttl_seconds=60)
    >>> [r.text for r in store.list_records(("acme",), filter={"kind": "pref"})]
    ['likes tea']
    >>> store.capabilities.vector_search, store.delete_where(("acme",))
    (False, 1)
    >>> _ = store.client.delete(*store.client.scan_iter(f"{store.key_prefix}*"))  # clean up
    >>> store.close()
"""

from __future__ import annotations

import json
from collections.abc import Generator, Hashable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias, TypeVar

import redis
import redis.asyncio

from memfold import memory_ops as ops
from memfold.backends.redis.calls import Call
from memfold.backends.redis.erasure import erase_memories
from memfold.backends.redis.keys import check_prefix, escape, tombstone_key, unescape
from memfold.backends.redis.layout import RedisLayout
from memfold.backends.redis.scripts import TOMBSTONED, Script
from memfold.backends.redis.store import DEFAULT_PREFIX, RedisThreadStore
from memfold.backends.redis.tombstones import lift
from memfold.errors import UnsupportedOperation
from memfold.memories import BaseMemoryStore, namespace_page, prefix_range, split_key
from memfold.memory_model import MemoryRecord, Namespace
from memfold.ops import Op
from memfold.recall.embedders import Embedder
from memfold.recall.filters import Filter, parse_filter
from memfold.retention import RetentionPolicy
from memfold.schema_steps import SchemaSteps, Step
from memfold.stores import Capabilities
from memfold.tombstones import EraseSubject, LiftTombstones, namespace_erased

__all__ = ["RedisMemoryStore"]

T = TypeVar("T")

Flow: TypeAlias = Generator[Call[Any], Any, T]
"""An operation as the Redis calls it makes: each yielded call's reply is sent back in."""

MEMORY_LAYOUT_STEPS: Final = (
    Step(1, "a hash of records per namespace; namespace, expiry and tenant indexes"),
    Step(2, "tombstones: a hash per tenant whose erased users refuse writes"),
    Step(3, "records indexed by creation time and namespaces by size, for retention sweeps"),
)
"""The steps of the key layout above (`memfold.backends.redis.layout`); step 3's upgrade fills
its indexes in for the records written before (`BACKFILL`)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_HEAD = """
local function head(p)
  return string.match(p, '^(%d+),(%d+),([^,]+),(%d+),(%d+),(.*)$')
end
local function live(e, now) return e == '0' or tonumber(e) > now end
"""

PUT = Script(
    _HEAD
    + TOMBSTONED
    + """
-- KEYS: namespaces, expiries, tenants, tombstones, ages, sizes. ARGV: base, now, capacity (0:
-- none), tenant,
-- keep ('1': a live record's creation time is not kept), then (namespace, id, record, expiry)
-- per record. Returns each record's creation time, or {'erased', n} (and writes nothing) if
-- the tenant or the user (second label) of the n-th record's namespace is erased.
for i = 6, #ARGV, 4 do
  local user = string.match(ARGV[i], '^[^\\31]*\\31([^\\31]+)\\31')
  if tombstoned(KEYS[4], 't:', user and 'u:' .. user or 't:') then
    return {'erased', (i - 2) / 4}
  end
end
local nsidx, expz = KEYS[1], KEYS[2]
local base, now, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local created, written = {}, {}
for i = 6, #ARGV, 4 do
  local ns, id, rec, exp = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = base .. ns
  local old = redis.call('HGET', key, id)
  local c = string.match(rec, '^(%d+),')
  if old and ARGV[5] ~= '1' then
    local oc, oe = head(old)
    if live(oe, now) then
      c = oc
      rec = oc .. string.sub(rec, (string.find(rec, ',', 1, true)))
    end
  end
  created[#created + 1] = c
  redis.call('HSET', key, id, rec)
  redis.call('ZADD', KEYS[5], c, ns .. id)
  redis.call('ZADD', nsidx, 0, ns)
  if exp == '0' then
    redis.call('ZREM', expz, ns .. id)
  else
    redis.call('ZADD', expz, exp, ns .. id)
  end
  written[ns] = true
end
redis.call('SADD', KEYS[3], ARGV[4])
if cap > 0 then
  for ns in pairs(written) do
    local key = base .. ns
    local n = redis.call('HLEN', key)
    if n > cap then
      local flat, rows = redis.call('HGETALL', key), {}
      for j = 1, #flat, 2 do
        local _, e, imp, u = head(flat[j + 1])
        rows[#rows + 1] = {live(e, now) and 1 or 0, tonumber(imp), tonumber(u), flat[j]}
      end
      table.sort(rows, function(a, b)
        for k = 1, 4 do if a[k] ~= b[k] then return a[k] < b[k] end end
        return false
      end)
      for j = 1, n - cap do
        redis.call('HDEL', key, rows[j][4])
        redis.call('ZREM', expz, ns .. rows[j][4])
        redis.call('ZREM', KEYS[5], ns .. rows[j][4])
      end
    end
  end
end
for ns in pairs(written) do redis.call('ZADD', KEYS[6], redis.call('HLEN', base .. ns), ns) end
return created
"""
)

GET = Script(
    _HEAD
    + """
-- KEYS: expiries. ARGV: record key, namespace, now, touch ('1'), then ids.
-- Returns each live record (false for missing or expired ones), touched when asked.
local key, ns, now, touch = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local out = {}
for i = 5, #ARGV do
  local rec = redis.call('HGET', key, ARGV[i])
  local c, e, imp, u, ttl, rest
  if rec then c, e, imp, u, ttl, rest = head(rec) end
  if rec and live(e, now) then
    if touch then
      if ttl ~= '0' then
        e = string.format('%.0f', now + tonumber(ttl))
        redis.call('ZADD', KEYS[1], e, ns .. ARGV[i])
      end
      rec = table.concat({c, e, imp, ARGV[3], ttl, rest}, ',')
      redis.call('HSET', key, ARGV[i], rec)
    end
    out[#out + 1] = rec
  else
    out[#out + 1] = false
  end
end
return out
"""
)

SCAN = Script(
    """
-- KEYS: namespaces. ARGV: base, low, high. Returns namespace, HGETALL pairs for each namespace
-- key from low (inclusive) to high (exclusive).
local out = {}
for _, ns in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '(' .. ARGV[3])) do
  out[#out + 1] = ns
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. ns)
end
return out
"""
)

_RESIZE = """
-- Record a namespace's new size, or drop it from the namespace and size indexes once empty.
local function resize(namespaces, sizes, base, ns)
  local n = redis.call('HLEN', base .. ns)
  if n == 0 then
    redis.call('ZREM', namespaces, ns)
    redis.call('ZREM', sizes, ns)
  else
    redis.call('ZADD', sizes, n, ns)
  end
end
"""

DELETE = Script(
    _RESIZE
    + """
-- KEYS: namespaces, expiries, ages, sizes. ARGV: base, then (namespace, id) pairs. Returns how
-- many existed.
local count = 0
for i = 2, #ARGV, 2 do
  local ns, id = ARGV[i], ARGV[i + 1]
  count = count + redis.call('HDEL', ARGV[1] .. ns, id)
  redis.call('ZREM', KEYS[2], ns .. id)
  redis.call('ZREM', KEYS[3], ns .. id)
  resize(KEYS[1], KEYS[4], ARGV[1], ns)
end
return count
"""
)

SWEEP = Script(
    _HEAD
    + _RESIZE
    + """
-- KEYS: namespaces, expiries, ages, sizes. ARGV: base, now (µs), the max-age cut-off (µs, ''
-- for none), keep last ('' for none), '1' for a dry run. Picks, through the indexes, the
-- records expired by now, those created before the cut-off, and in each namespace holding more
-- than keep last, all but its newest keep last of the rest; deletes them unless this is a dry
-- run. Returns how many were picked.
local base, now = ARGV[1], tonumber(ARGV[2])
local cutoff, keep, dry = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local doomed, count = {}, 0
local function split(member)
  local cut = string.find(member, '\\31[^\\31]*$')
  return string.sub(member, 1, cut), string.sub(member, cut + 1)
end
local function pick(ns, id)
  if not doomed[ns] then doomed[ns] = {} end
  if not doomed[ns][id] then
    doomed[ns][id] = true
    count = count + 1
  end
end
local stale_exp, stale_age = {}, {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])) do
  local ns, id = split(member)
  local rec = redis.call('HGET', base .. ns, id)
  local _, e
  if rec then _, e = head(rec) end
  if rec and not live(e, now) then pick(ns, id) else stale_exp[#stale_exp + 1] = member end
end
if cutoff then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[3])) do
    local ns, id = split(member)
    local rec = redis.call('HGET', base .. ns, id)
    if rec and tonumber((head(rec))) < cutoff then
      pick(ns, id)
    elseif not rec then
      stale_age[#stale_age + 1] = member
    end
  end
end
if keep then
  for _, ns in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[4], '+inf')) do
    local flat, rows = redis.call('HGETALL', base .. ns), {}
    local gone = doomed[ns] or {}
    for j = 1, #flat, 2 do
      if not gone[flat[j]] then rows[#rows + 1] = {tonumber((head(flat[j + 1]))), flat[j]} end
    end
    table.sort(rows, function(a, b)
      if a[1] ~= b[1] then return a[1] < b[1] end
      return a[2] < b[2]
    end)
    for j = 1, #rows - keep do pick(ns, rows[j][2]) end
  end
end
if dry then return count end
for ns, ids in pairs(doomed) do
  for id in pairs(ids) do
    redis.call('HDEL', base .. ns, id)
    redis.call('ZREM', KEYS[2], ns .. id)
    redis.call('ZREM', KEYS[3], ns .. id)
  end
  resize(KEYS[1], KEYS[4], base, ns)
end
for j = 1, #stale_exp, 1000 do
  redis.call('ZREM', KEYS[2], unpack(stale_exp, j, math.min(j + 999, #stale_exp)))
end
for j = 1, #stale_age, 1000 do
  redis.call('ZREM', KEYS[3], unpack(stale_age, j, math.min(j + 999, #stale_age)))
end
return count
"""
)

BACKFILL = Script(
    _HEAD
    + """
-- KEYS: ages, sizes. ARGV: base, namespace. Indexes the namespace's records by creation time
-- and the namespace by size, as writes since layout 3 do.
local flat = redis.call('HGETALL', ARGV[1] .. ARGV[2])
for j = 1, #flat, 2 do
  redis.call('ZADD', KEYS[1], (head(flat[j + 1])), ARGV[2] .. flat[j])
end
if #flat > 0 then redis.call('ZADD', KEYS[2], #flat / 2, ARGV[2]) end
return #flat / 2
"""
)

SCRIPTS: Final = (PUT, GET, SCAN, DELETE, SWEEP, BACKFILL)


def _micros(when: datetime | None) -> int:
    return 0 if when is None else (when - _EPOCH) // timedelta(microseconds=1)


def _time(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _encode(record: MemoryRecord, value_json: str) -> str:
    ttl_us = 0 if record.ttl_seconds is None else max(1, round(record.ttl_seconds * 1_000_000))
    head = (
        f"{_micros(record.created_at)},{_micros(record.expires_at)},{record.importance!r},"
        f"{_micros(record.last_used_at)},{ttl_us},"
    )
    rest = json.dumps([record.text, record.embedding_model, _micros(record.updated_at),
                       record.ttl_seconds])  # fmt: skip
    return f"{head}{rest[:-1]},{value_json}]"


def _decode(namespace: Namespace, record_id: str, raw: bytes) -> MemoryRecord:
    created, expires, importance, used, _ttl, rest = raw.decode().split(",", 5)
    text, model, updated, ttl, value = json.loads(rest)
    return MemoryRecord(
        namespace, record_id, text, value, None, model, float(importance), ttl,
        _time(int(created)), _time(updated), _time(int(used)),
        None if expires == "0" else _time(int(expires)),
    )  # fmt: skip


def _live(raw: bytes, now_us: int) -> bool:
    expires = raw.split(b",", 2)[1]
    return expires == b"0" or int(expires) > now_us


class RedisMemoryStore(BaseMemoryStore):
    """Long-term memory records in plain Redis 7 (no modules), every write one Lua script.

    Args:
        url: ``redis://[:password@]host:6379/0`` (or ``rediss://``, ``unix://``).
        client, async_client: redis-py clients to use instead of ones made from ``url``.
        key_prefix: the start of every key, so several stores can share one database.

    The memory arguments are `BaseMemoryStore`'s; ``embedder`` and ``dedupe_threshold`` have
    no effect, since records carry no vectors here.
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        embedder: Embedder | None = None,
        dimensions: int | None = None,
        dedupe_threshold: float | None = None,
        capacity: int | None = None,
        text_weight: float | None = None,
        vector_weight: float | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        # The thread store's client handling: URL, per-loop async clients, script loading.
        self._redis = RedisThreadStore(
            url, client=client, async_client=async_client, key_prefix=check_prefix(key_prefix)
        )
        self.key_prefix = key_prefix
        self._layout = RedisLayout(
            self._redis,
            "memories",
            f"{key_prefix}m:layout",
            MEMORY_LAYOUT_STEPS,
            SCRIPTS,
            backfill=self._backfill,
        )
        super().__init__(
            Capabilities(persistent=True, shared=True, transactions=True, ttl=True),
            embedder=embedder,
            dimensions=dimensions,
            dedupe_threshold=dedupe_threshold,
            capacity=capacity,
            text_weight=text_weight,
            vector_weight=vector_weight,
            retention=retention,
        )

    @property
    def client(self) -> redis.Redis:
        """The sync client."""
        return self._redis.client

    @property
    def tombstone_place(self) -> Hashable:
        """The tombstone hashes of this server and key prefix (shared by its store kinds)."""
        return self._redis.tombstone_place

    # Keys.

    def _tenant(self, key: str) -> str:
        return f"{self.key_prefix}{{{escape(split_key(key)[0])}}}"

    def _base(self, key: str) -> str:
        return self._tenant(key) + ":mr:"

    def _index_keys(self, key: str) -> tuple[str, str, str, str]:
        """The namespace, expiry, age and size indexes of the tenant of ``key``."""
        tenant = self._tenant(key)
        return f"{tenant}:mns", f"{tenant}:mexp", f"{tenant}:mage", f"{tenant}:msize"

    # Drivers.

    def execute(self, op: Op[T]) -> T:
        """Run one operation (one script per tenant it touches)."""
        result: T = self._redis.drive(self._flow(op))
        return result

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation on the async client."""
        result: T = await self._redis.adrive(self._flow(op))
        return result

    def _flow(self, op: Op[Any]) -> Flow[Any]:
        match op:
            case ops.PutMemories():
                return self._put(op)
            case ops.GetMemories():
                return self._get(op)
            case ops.DeleteMemories(namespace, ids):
                return self._delete([(namespace, i) for i in ids])
            case ops.DeleteMemoriesWhere(prefix, where):
                return self._delete_where(prefix, where)
            case ops.ListMemories():
                return self._list(op)
            case ops.CountMemories(prefix, where, now, stale_model):
                return self._count(prefix, where, now, stale_model)
            case ops.ListMemoryNamespaces():
                return self._namespaces(op)
            case ops.SweepMemories():
                return self._sweep(op)
            case EraseSubject():
                return erase_memories(self.key_prefix, op)
            case LiftTombstones():
                return lift(self.key_prefix, op)
        raise UnsupportedOperation(
            f"the redis memory store cannot run {type(op).__name__}: plain Redis has no vector "
            "or ranked full-text index, so use list_records(filter=...) here, or a memory, "
            "sqlite, postgresql or chroma store for search"
        )

    def _script(self, script: Script, keys: tuple[str, ...], *args: str | bytes | int) -> Call[Any]:
        return Call(("EVALSHA", script.sha, len(keys), *keys, *args), _same, script)

    # Operations.

    def _put(self, op: ops.PutMemories) -> Flow[list[MemoryRecord]]:
        by_tenant: dict[str, list[int]] = {}
        for i, r in enumerate(op.records):
            by_tenant.setdefault(r.namespace[0], []).append(i)
        created: dict[int, int] = {}
        for tenant, positions in by_tenant.items():
            key = "".join(label + "\x1f" for label in op.records[positions[0]].namespace)
            args: list[str | bytes | int] = []
            for i in positions:
                r = op.records[i]
                ns = "".join(label + "\x1f" for label in r.namespace)
                args += [ns, str(r.id), _encode(r, op.values[i]), _micros(r.expires_at)]
            reply = yield self._script(
                PUT, (*self._index_keys(key)[:2], f"{self.key_prefix}mtenants",
                      tombstone_key(self.key_prefix, tenant), *self._index_keys(key)[2:]),
                self._base(key), _micros(op.now), op.capacity or 0, escape(tenant),
                int(op.keep_times), *args,
            )  # fmt: skip
            if reply and reply[0] == b"erased":
                raise namespace_erased(op.records[positions[int(reply[1]) - 1]].namespace)
            created.update(zip(positions, (int(c) for c in reply), strict=True))
        return [replace(r, created_at=_time(created[i])) for i, r in enumerate(op.records)]

    def _get(self, op: ops.GetMemories) -> Flow[list[MemoryRecord]]:
        namespace = split_key(op.namespace)
        reply = yield self._script(
            GET, (self._index_keys(op.namespace)[1],), self._base(op.namespace) + op.namespace,
            op.namespace, _micros(op.now), "1" if op.touch else "0", *op.ids,
        )  # fmt: skip
        return [_decode(namespace, i, raw) for i, raw in zip(op.ids, reply, strict=True) if raw]

    def _scan(
        self, prefix: str, now: datetime | None, where: Filter
    ) -> Flow[list[tuple[str, MemoryRecord]]]:
        """``(namespace key, record)`` of the records under ``prefix`` (live at ``now`` unless
        None) passing ``where``."""
        low, high = prefix_range(prefix)
        reply = yield self._script(SCAN, (self._index_keys(prefix)[0],), self._base(prefix),
                                   low, high)  # fmt: skip
        now_us = None if now is None else _micros(now)
        found = []
        for j in range(0, len(reply), 2):
            key = reply[j].decode()
            namespace = split_key(key)
            flat = reply[j + 1]
            for f in range(0, len(flat), 2):
                if now_us is not None and not _live(flat[f + 1], now_us):
                    continue
                record = _decode(namespace, flat[f].decode(), flat[f + 1])
                if where.matches(record.value):
                    found.append((key, record))
        return found

    def _delete(self, pairs: list[tuple[str, str]]) -> Flow[int]:
        if not pairs:
            return 0
        key = pairs[0][0]
        args = [part for pair in pairs for part in pair]
        count = yield self._script(DELETE, self._index_keys(key), self._base(key), *args)
        return int(count)

    def _delete_where(self, prefix: str, where: Filter) -> Flow[int]:
        found = yield from self._scan(prefix, None, where)
        return (yield from self._delete([(key, str(r.id)) for key, r in found]))

    def _listed(
        self, prefix: str, now: datetime, where: Filter, stale_model: str | None
    ) -> Flow[list[tuple[str, MemoryRecord]]]:
        found = yield from self._scan(prefix, now, where)
        # No record has a vector here, so every record with text is stale for any model.
        return [(key, r) for key, r in found if stale_model is None or r.text]

    def _list(self, op: ops.ListMemories) -> Flow[list[MemoryRecord]]:
        found = yield from self._listed(op.prefix, op.now, op.filter, op.stale_model)
        found.sort(key=lambda pair: (pair[1].created_at, pair[1].id, pair[0]))
        return [r for _, r in found[op.offset : op.offset + op.limit]]

    def _count(self, prefix: str, where: Filter, now: datetime, model: str | None) -> Flow[int]:
        return len((yield from self._listed(prefix, now, where, model)))

    def _namespaces(self, op: ops.ListMemoryNamespaces) -> Flow[list[Namespace]]:
        found = yield from self._scan(op.prefix, op.now, parse_filter(None))
        return namespace_page((key for key, _ in found), op)

    def _sweep(self, op: ops.SweepMemories) -> Flow[int]:
        """One script per tenant, reading its expiry, age and size indexes (see `SWEEP`)."""
        if op.prefix:
            tenants = [escape(split_key(op.prefix)[0]).encode()]
        else:
            tenants = yield Call(("SMEMBERS", f"{self.key_prefix}mtenants"), _same)
        policy, now = op.policy, _micros(op.now)
        cutoff = ""
        if policy.max_age_seconds is not None:
            cutoff = str(now - round(policy.max_age_seconds * 1_000_000))
        keep = "" if policy.keep_last is None else policy.keep_last
        count = 0
        for tenant in sorted(tenants):
            key = unescape(tenant) + "\x1f"
            count += yield self._script(
                SWEEP, self._index_keys(key), self._base(key), now, cutoff, keep,
                int(op.dry_run),
            )  # fmt: skip
        return count

    def _backfill(self) -> Flow[int]:
        """Index the records written before layout 3 (its upgrade; idempotent); returns how
        many records were indexed."""
        indexed = 0
        for tenant in (yield Call(("SMEMBERS", f"{self.key_prefix}mtenants"), _same)):
            key = unescape(tenant) + "\x1f"
            namespaces, _, ages, sizes = self._index_keys(key)
            for ns in (yield Call(("ZRANGE", namespaces, 0, -1), _same)):
                indexed += yield self._script(BACKFILL, (ages, sizes), self._base(key), ns)
        return indexed

    # Setup and lifecycle.

    def schema_steps(self) -> list[SchemaSteps]:
        """The memory key layout's steps."""
        return [self._layout]

    def close(self) -> None:
        """Close the clients this store made (clients you passed in stay open)."""
        self._redis.close()

    async def aclose(self) -> None:
        """Close the clients this store made, the async one of this event loop included."""
        await self._redis.aclose()


def _same(reply: Any) -> Any:
    return reply
