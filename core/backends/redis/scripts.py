"""The Lua scripts that make each multi-key write (and each multi-key read) one atomic step.

Redis runs a script to completion before any other command, so a reader sees a thread either
before or after a write, never half-way. A script cannot roll back, so each one checks
everything that could fail (duplicate ids, unknown ids) before its first write.

Write scripts take ``KEYS = messages`` (the thread's list: it carries the tenant's hash tag,
so a cluster routes the script right) and ``ARGV = member, ttl_ms, ...``; they name the thread's
and tenant's other keys from it (`memfold.backends.redis.keys`), so a call sends one key, not
eight. Those that could bring an erased thread back (append, replace, update, metadata,
restore) first refuse the write if the tenant's tombstones (`memfold.backends.redis.tombstones`)
name the tenant or the thread. Each ends in ``touch()``, which stamps the thread's update time
(the server's ``TIME`` in µs: scripts run one at a time, so each write gets a later stamp) as
its score in the tenant's index, records the creation time of a thread new to the index,
scores it by size class and first message time in the indexes retention sweeps search, and
with a TTL refreshes the expiry of every key but the tombstones and drops expired threads from
the index. An append touches only what it changes: the size index when the thread moves to
another size class (`size_class`), the first-message index when the thread's front changes.

A message's sequence number (in the ids hash) is its list index plus ``n - LLEN``, where ``n``
(in the info hash) is the next number to give out: trimming the oldest messages needs no
renumbering, and neither does an append.

A list element starts with a flag byte and the message's id: 16 binary bytes for flags ``b``
and ``c``, else the id's text up to a NUL (`memfold.backends.redis.elements`), so a script reads
a message's id without decoding JSON or zstd.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "ALL",
    "APPEND",
    "BACKFILL",
    "CLEAR",
    "CLEAR_TENANT",
    "DELETE_MESSAGES",
    "DELETE_THREAD",
    "DROP_THREADS",
    "GET",
    "LIST",
    "LOAD_BEFORE",
    "RESTORE",
    "SELECT_DOOMED",
    "SET_METADATA",
    "SET_TTL",
    "TOMBSTONED",
    "TRIM_FRONT",
    "UPDATE",
    "Script",
]


@dataclass(frozen=True, slots=True)
class Script:
    """Lua source and its SHA1, the name ``EVALSHA`` runs it by once ``SCRIPT LOAD`` has seen it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


TOMBSTONED = """
-- Whether hash `key` (a tenant's tombstones) holds a live tombstone under any of the fields
-- given: a value starts with its expiry in µs since the epoch, 0 for never. Most tenants have
-- none, and EXISTS of a missing key is the cheapest read.
local function tombstoned(key, ...)
  if redis.call('EXISTS', key) == 0 then return false end
  local now
  for _, value in ipairs(redis.call('HMGET', key, ...)) do
    if value then
      local expires = tonumber(string.match(value, '^(%d+)'))
      if expires == 0 then return true end
      if not now then
        local clock = redis.call('TIME')
        now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
      end
      if expires > now then return true end
    end
  end
  return false
end
"""
"""A Lua helper for every store kind's write scripts (`memfold.backends.redis.tombstones`)."""

_HELPERS = """
local function id_of(element)
  local flag = string.byte(element, 1)
  if flag == 98 or flag == 99 or flag == 66 or flag == 67 then  -- 'b', 'c' ('B', 'C' for a
    -- tool message): a 16-byte binary id, shown as hex
    return string.format(string.rep('%02x', 16), string.byte(element, 2, 17))
  end
  return string.sub(element, 2, string.find(element, '\\0', 2, true) - 1)
end

local function is_tool(element)
  -- Whether an element holds a tool result (its flag in upper case: 'B', 'C', 'T', 'U').
  local flag = string.byte(element, 1)
  return flag == 66 or flag == 67 or flag == 84 or flag == 85
end

local function chunked(command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

local function time_of(element)
  -- A message's creation time (µs) from its element; 0 when the element does not hold it.
  local flag, at = string.byte(element, 1), nil
  if flag == 98 or flag == 99 or flag == 66 or flag == 67 then
    at = 18
  elseif flag == 116 or flag == 117 or flag == 84 or flag == 85 then
    at = string.find(element, '\\0', 2, true) + 1
  end
  if not at or #element < at + 7 then return 0 end
  local micros = struct.unpack('>i8', element, at)
  if micros < -9e18 then return 0 end
  return micros
end

local function size_class(n)
  -- n rounded up to its size class: exact to 16, then 8 classes per doubling (18, 20, ..., 32,
  -- 36, ..., 64, ...). The size index scores a thread by the class of its message count, never
  -- below the count, so an append moves it there only when the thread changes class.
  if n <= 16 then return n end
  local _, e = math.frexp(n - 1)
  local step = 2 ^ (e - 4)
  return math.ceil(n / step) * step
end

local function index_size(messages, sizes, firsts, member)
  -- Score the thread by size class and first message time, or drop it from both.
  local length = redis.call('LLEN', messages)
  if length > 0 then
    redis.call('ZADD', sizes, size_class(length), member)
    redis.call('ZADD', firsts, time_of(redis.call('LINDEX', messages, 0)), member)
  else
    redis.call('ZREM', sizes, member)
    redis.call('ZREM', firsts, member)
  end
end
"""

_WRITE = (
    _HELPERS
    + TOMBSTONED
    + """
-- Functions first, taking what they need, and locals after: a closure over the script's
-- locals costs an upvalue each on every call.

local function thread_of(messages, member)
  -- The start of the thread's keys and of its tenant's, from its list and member.
  return string.sub(messages, 1, -2), string.sub(messages, 1, -#member - 5)
end

local function base(info, messages)
  return tonumber(redis.call('HGET', info, 'n') or '0') - redis.call('LLEN', messages)
end

local function touch(indexed)
  -- Stamp the update time; score the size and first-message indexes unless `indexed` (the
  -- caller did); with a TTL, refresh the expiry of the thread's and the tenant's keys.
  local messages, member, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
  local thread, tag = thread_of(messages, member)
  local index, info = tag .. 'threads', thread .. 'h'
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  if ttl > 0 then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('(%.0f', now - ttl * 1000))
  end
  if redis.call('ZADD', index, now, member) == 1 then redis.call('HSETNX', info, 'c', now) end
  if not indexed then index_size(messages, tag .. 'sizes', tag .. 'firsts', member) end
  if ttl > 0 then
    for _, key in ipairs({messages, thread .. 'i', info, index}) do
      redis.call('PEXPIRE', key, ttl)
    end
    for _, name in ipairs({'sizes', 'firsts', 'ttls'}) do
      redis.call('PEXPIRE', tag .. name, ttl)
    end
  end
  return now
end

local member, messages = ARGV[1], KEYS[1]
local thread, tag = thread_of(messages, member)
local ids, info, stones = thread .. 'i', thread .. 'h', tag .. 'erased'
"""
)
"""The start of every write script. Those that refuse writes to erased threads check
``tombstoned(stones, 't:', 'h:' .. member)`` themselves (a helper would close over both)."""

APPEND = Script(
    _WRITE
    + """
-- ARGV[3] max messages (0: no cap), ARGV[4] '1' to replace the thread, ARGV[5] '' or '='
-- and the id the thread's last message must have ('=' alone: the thread must have none),
-- then id, element pairs. Returns nil once appended, else (and nothing changed) the first
-- id already in the thread, or {the last message's id} when it is not the one ARGV[5] names.
if tombstoned(stones, 't:', 'h:' .. member) then return redis.error_reply('memfold-erased') end
local cap, count = tonumber(ARGV[3]), (#ARGV - 5) / 2
if ARGV[5] ~= '' then
  local last = redis.call('LINDEX', messages, -1)
  last = last and id_of(last) or ''
  if '=' .. last ~= ARGV[5] then return {last} end
end
local elements, positions = {}, {}
for i = 6, #ARGV, 2 do
  elements[#elements + 1] = ARGV[i + 1]
end
local length
if ARGV[4] == '1' then
  redis.call('DEL', messages, ids)
  redis.call('HSET', info, 'n', count)
  for i = 6, #ARGV, 2 do
    positions[#positions + 1] = ARGV[i]
    positions[#positions + 1] = (i - 6) / 2
  end
  chunked('HSET', ids, positions)
else
  local first = redis.call('HINCRBY', info, 'n', count) - count
  for i = 6, #ARGV, 2 do
    if redis.call('HSETNX', ids, ARGV[i], first + (i - 6) / 2) == 0 then
      for j = 6, i - 2, 2 do redis.call('HDEL', ids, ARGV[j]) end
      redis.call('HINCRBY', info, 'n', -count)
      return ARGV[i]
    end
  end
end
for i = 1, #elements, 1000 do
  length = redis.call('RPUSH', messages, unpack(elements, i, math.min(i + 999, #elements)))
end
local drop = cap > 0 and length and length - cap or 0
if drop > 0 then
  local dead = {}
  for _, element in ipairs(redis.call('LPOP', messages, drop)) do
    dead[#dead + 1] = id_of(element)
  end
  -- Tool results left at the front go too: the call they answer is gone.
  local front = redis.call('LINDEX', messages, 0)
  while front and is_tool(front) do
    redis.call('LPOP', messages)
    dead[#dead + 1], drop = id_of(front), drop + 1
    front = redis.call('LINDEX', messages, 0)
  end
  chunked('HDEL', ids, dead)
end
if ARGV[4] == '1' or not length then
  touch()
  return false
end
-- An append: `before` messages were there, `after` are; score only what changed.
drop = math.max(drop, 0)
local before, after = length - count, length - drop
if after == 0 then  -- the cap took every message (all tool results)
  redis.call('ZREM', tag .. 'sizes', member)
  redis.call('ZREM', tag .. 'firsts', member)
  touch(true)
  return false
end
if size_class(after) ~= size_class(before) then
  redis.call('ZADD', tag .. 'sizes', size_class(after), member)
end
if before == 0 or drop > 0 then  -- a new front: ours unless the cut left an older message
  local front = drop >= before and elements[drop - before + 1]
  local at = time_of(front or redis.call('LINDEX', messages, 0))
  redis.call('ZADD', tag .. 'firsts', at, member)
end
touch(true)
return false
"""
)

UPDATE = Script(
    _WRITE
    + """
-- ARGV[3]: '1' to keep the thread's update time and expiry (a key rotation's rewrite);
-- ARGV[4..]: id, element pairs. Returns the first id not in the thread, or nil once written.
if tombstoned(stones, 't:', 'h:' .. member) then return redis.error_reply('memfold-erased') end
if #ARGV < 4 then return false end
if redis.call('EXISTS', info) == 0 then return ARGV[4] end
local offset, at = base(info, messages), {}
for i = 4, #ARGV, 2 do
  local seq = redis.call('HGET', ids, ARGV[i])
  if not seq then return ARGV[i] end
  at[#at + 1] = tonumber(seq) - offset
end
for j, position in ipairs(at) do redis.call('LSET', messages, position, ARGV[2 * j + 3]) end
if ARGV[3] ~= '1' then touch() end
return false
"""
)

DELETE_MESSAGES = Script(
    _WRITE
    + """
-- ARGV[3..]: message ids. Returns the removed elements, oldest first. The messages after the
-- first removed one move up, and are renumbered.
local offset, doomed, lowest = base(info, messages), {}, nil
for i = 3, #ARGV do
  local seq = redis.call('HGET', ids, ARGV[i])
  if seq then
    local position = tonumber(seq) - offset
    doomed[position] = true
    if not lowest or position < lowest then lowest = position end
  end
end
if not lowest then return {} end
local tail = redis.call('LRANGE', messages, lowest, -1)
if lowest == 0 then
  redis.call('DEL', messages)
else
  redis.call('LTRIM', messages, 0, lowest - 1)
end
local removed, dead, kept, positions = {}, {}, {}, {}
for j, element in ipairs(tail) do
  if doomed[lowest + j - 1] then
    removed[#removed + 1] = element
    dead[#dead + 1] = id_of(element)
  else
    kept[#kept + 1] = element
    positions[#positions + 1] = id_of(element)
    positions[#positions + 1] = offset + lowest + #kept - 1
  end
end
chunked('RPUSH', messages, kept)
chunked('HDEL', ids, dead)
chunked('HSET', ids, positions)
redis.call('HSET', info, 'n', offset + lowest + #kept)
touch()
return removed
"""
)

_INFO = """
local function info_of(key, messages, updated)
  local f = redis.call('HMGET', key, 'c', 'm')
  if not f[1] then return nil end
  return {f[1], updated or f[1], f[2] or '{}', redis.call('LLEN', messages)}
end
"""

SET_METADATA = Script(
    _WRITE
    + _INFO
    + """
-- ARGV[3]: metadata JSON. Returns created, updated, metadata, message count.
if tombstoned(stones, 't:', 'h:' .. member) then return redis.error_reply('memfold-erased') end
redis.call('HSET', info, 'm', ARGV[3])
return info_of(info, messages, touch())
"""
)

RESTORE = Script(
    _WRITE
    + _INFO
    + """
-- ARGV[3]: metadata JSON, ARGV[4]: creation time, ARGV[5]: update time (µs). Returns created,
-- updated, metadata, message count.
if tombstoned(stones, 't:', 'h:' .. member) then return redis.error_reply('memfold-erased') end
touch()
redis.call('HSET', info, 'm', ARGV[3], 'c', ARGV[4])
redis.call('ZADD', tag .. 'threads', ARGV[5], member)
return info_of(info, messages, ARGV[5])
"""
)

CLEAR = Script(
    _WRITE
    + """
-- Returns how many messages went (0, and nothing created, for an unknown thread).
if redis.call('EXISTS', info) == 0 then return 0 end
local removed = redis.call('LLEN', messages)
redis.call('DEL', messages, ids)
redis.call('HSET', info, 'n', 0)
touch()
return removed
"""
)

DELETE_THREAD = Script(
    """
-- KEYS: `ThreadKeys.all`; ARGV[1]: member. Returns 1 if the thread existed.
local existed = redis.call('DEL', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2])
for i = 4, 7 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return existed
"""
)

CLEAR_TENANT = Script(
    """
-- KEYS: the tenant's indexes (`TenantKeys.all`); ARGV[1]: the tenant's key base. Returns how
-- many threads went.
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. member
  removed = removed + redis.call('DEL', key .. ':h')
  redis.call('DEL', key .. ':m', key .. ':i')
end
redis.call('DEL', unpack(KEYS))
return removed
"""
)

SET_TTL = Script(
    """
-- KEYS: info, ttls; ARGV: member, the thread's own TTL in seconds ('' clears it). Returns 1 if
-- the thread exists (nothing is set otherwise).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
return 1
"""
)

SELECT_DOOMED = Script(
    """
-- KEYS: the tenant's indexes (`TenantKeys.all`); ARGV: key base, now (µs), the policy's TTL
-- (µs, '' for none), max threads ('' for none). Reads only: returns member, update time and
-- message count of each thread a sweep deletes whole, in order: those past their own TTL, those
-- not written for the policy's TTL (and without one of their own), then the least recently
-- updated beyond the newest max threads of the rest. Threads whose keys are gone (evicted)
-- are left out.
local index, ttls, base, now = KEYS[1], KEYS[4], ARGV[1], tonumber(ARGV[2])
local idle, most = tonumber(ARGV[3]), tonumber(ARGV[4])
local picked, seen, reply = 0, {}, {}
local function pick(member, updated)
  if seen[member] then return end
  seen[member] = true
  picked = picked + 1
  if redis.call('EXISTS', base .. member .. ':h') == 1 then
    reply[#reply + 1] = member
    reply[#reply + 1] = updated
    reply[#reply + 1] = redis.call('LLEN', base .. member .. ':m')
  end
end
local own = redis.call('ZRANGE', ttls, 0, -1, 'WITHSCORES')
for i = 1, #own, 2 do
  local updated = redis.call('ZSCORE', index, own[i])
  if updated and tonumber(updated) + tonumber(own[i + 1]) * 1000000 <= now then
    pick(own[i], updated)
  end
end
if idle then
  local found = redis.call('ZRANGEBYSCORE', index, '-inf', string.format('%.0f', now - idle),
                           'WITHSCORES')
  for i = 1, #found, 2 do
    if not redis.call('ZSCORE', ttls, found[i]) then pick(found[i], found[i + 1]) end
  end
end
if most then
  local excess = redis.call('ZCARD', index) - picked - most
  if excess > 0 then
    local oldest = redis.call('ZRANGE', index, 0, excess + picked - 1, 'WITHSCORES')
    for i = 1, #oldest, 2 do
      if excess == 0 then break end
      if not seen[oldest[i]] then
        pick(oldest[i], oldest[i + 1])
        excess = excess - 1
      end
    end
  end
end
return reply
"""
)

DROP_THREADS = Script(
    """
-- KEYS: the tenant's indexes (`TenantKeys.all`); ARGV: key base, then member, update time
-- pairs. Deletes each thread not written since that update time. Returns, for each thread
-- deleted, its member and how many messages it held.
local base, reply = ARGV[1], {}
for i = 2, #ARGV, 2 do
  local member = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], member) == ARGV[i + 1] then
    local key = base .. member
    if redis.call('DEL', key .. ':h') == 1 then
      reply[#reply + 1] = member
      reply[#reply + 1] = redis.call('LLEN', key .. ':m')
    end
    redis.call('DEL', key .. ':m', key .. ':i')
    for k = 1, 4 do redis.call('ZREM', KEYS[k], member) end
  end
end
return reply
"""
)

TRIM_FRONT = Script(
    _HELPERS
    + """
-- KEYS: `ThreadKeys.all`; ARGV: member, how many of the oldest messages to remove, the id of
-- the last of them, the id of the message after it ('' when none is), and an update time (µs,
-- '' for none): a thread emptied by the cut and not written since that time is deleted.
-- Returns {messages removed, 1 if the thread was deleted else 0}; {-1, 0} (and nothing
-- changed) when the thread's front is not what the caller read. The update time stays.
local messages, ids, info, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, cut = ARGV[1], tonumber(ARGV[2])
local last, after = redis.call('LINDEX', messages, cut - 1), redis.call('LINDEX', messages, cut)
if not last or id_of(last) ~= ARGV[3] then return {-1, 0} end
if (after and id_of(after) or '') ~= ARGV[4] then return {-1, 0} end
if not after and ARGV[5] ~= '' then
  local updated = redis.call('ZSCORE', index, member)
  if updated and tonumber(updated) < tonumber(ARGV[5]) then
    redis.call('DEL', messages, ids, info)
    for i = 4, 7 do redis.call('ZREM', KEYS[i], member) end
    return {cut, 1}
  end
end
local dead = {}
for _, element in ipairs(redis.call('LRANGE', messages, 0, cut - 1)) do
  dead[#dead + 1] = id_of(element)
end
chunked('HDEL', ids, dead)
redis.call('LTRIM', messages, cut, -1)
index_size(messages, KEYS[5], KEYS[6], member)
return {cut, 0}
"""
)

BACKFILL = Script(
    _HELPERS
    + """
-- KEYS: the tenant's indexes (`TenantKeys.all`); ARGV: key base, start, count. Scores that page
-- of the tenant's threads (by update time) by size class and first message time, as writes
-- since layout 5 do; returns how many threads the page held.
local start = tonumber(ARGV[2])
local page = redis.call('ZRANGE', KEYS[1], start, start + tonumber(ARGV[3]) - 1)
for _, member in ipairs(page) do
  index_size(ARGV[1] .. member .. ':m', KEYS[2], KEYS[3], member)
end
return #page
"""
)

GET = Script(
    _INFO
    + """
-- KEYS: info, messages, index; ARGV[1]: member. Returns created, updated, metadata, message
-- count; nil if there is no such thread.
return info_of(KEYS[1], KEYS[2], redis.call('ZSCORE', KEYS[3], ARGV[1])) or false
"""
)

LIST = Script(
    _HELPERS
    + _INFO
    + """
-- KEYS[1]: the tenant's index; ARGV: key base, offset, limit. Returns member, created,
-- updated, metadata, count for each thread of the page, newest first. Threads whose keys have
-- expired or been evicted are skipped, and dropped from the index.
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local page, stale, skipped, found, start = {}, {}, 0, 0, 0
local batch = math.min(offset + limit, 1000)
while found < limit do
  local members = redis.call('ZREVRANGE', KEYS[1], start, start + batch - 1, 'WITHSCORES')
  if #members == 0 then break end
  for i = 1, #members, 2 do
    local member = members[i]
    local key = ARGV[1] .. member
    local row = info_of(key .. ':h', key .. ':m', members[i + 1])
    if not row then
      stale[#stale + 1] = member
    elseif skipped < offset then
      skipped = skipped + 1
    elseif found < limit then
      found = found + 1
      page[#page + 1] = member
      for _, value in ipairs(row) do page[#page + 1] = value end
    end
  end
  start = start + batch
end
chunked('ZREM', KEYS[1], stale)
return page
"""
)

LOAD_BEFORE = Script(
    """
-- KEYS: messages, ids, info; ARGV: message id, how many (-1: all). Returns the elements
-- before that message, oldest first; nil if the thread has no such message.
local seq = redis.call('HGET', KEYS[2], ARGV[1])
if not seq then return false end
local length = redis.call('LLEN', KEYS[1])
local stop = tonumber(seq) - tonumber(redis.call('HGET', KEYS[3], 'n') or '0') + length - 1
local last = tonumber(ARGV[2])
if stop < 0 or last == 0 then return {} end
local start = 0
if last > 0 then start = math.max(0, stop - last + 1) end
return redis.call('LRANGE', KEYS[1], start, stop)
"""
)

ALL = (
    APPEND,
    UPDATE,
    DELETE_MESSAGES,
    SET_METADATA,
    RESTORE,
    CLEAR,
    DELETE_THREAD,
    CLEAR_TENANT,
    GET,
    LIST,
    LOAD_BEFORE,
    SET_TTL,
    SELECT_DOOMED,
    DROP_THREADS,
    TRIM_FRONT,
    BACKFILL,
)
"""Every script, for ``setup()`` to load up front."""
