"""The Lua scripts of the Redis checkpoint store: each read or write is one atomic step.

Every script takes ``KEYS`` = `CheckpointKeys.all` (the thread's twelve keys, the tenant's
thread index, its tombstones, then its four retention indexes), plus extra keys after them
where noted; `START_WRITE` and `IS_WHOLE` take the thread's info hash alone. A write that
adds a checkpoint keeps the retention indexes on the safe side (a namespace's count can only
raise ``sizes``, the checkpoint it makes removable can only lower ``firsts``, a re-put marks
the thread ``dirty``); a sweep sets them exactly, in the same compare-and-set step as its
removals. The writes that
could bring an erased thread back (a checkpoint, pending writes, a copy's target, a journal
entry) are refused if the tombstones (`memfold.backends.redis.tombstones`) name the tenant or
the thread. Decisions that need memfold's own
logic (the delta layout of `memfold.checkpoint_deltas`, retention) are made in Python from what
a read script returned; the write is then applied by `APPLY`, which refuses it if the thread's
version ``v`` moved in between (compare-and-set), so no change is ever lost to a race.

The layout is in `memfold.backends.redis.checkpoint_keys`.
"""

from __future__ import annotations

from memfold.backends.redis.scripts import TOMBSTONED, Script

__all__ = [
    "ALL",
    "APPLY",
    "BACKFILL",
    "CLAIM_WHOLE",
    "COPY",
    "DELETE",
    "DELETE_EFFECTS",
    "DUMP",
    "IS_WHOLE",
    "MARK_WHOLE",
    "PUT_READ",
    "READ",
    "RECORD_EFFECT",
    "RELEASE",
    "SET_TTL",
    "START_WRITE",
    "WALK",
]

_HELPERS = (
    TOMBSTONED
    + r"""
local info, ids, ages, records = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local metadata, roots, payloads, headers = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local write_index, writes, runs, journal = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
-- how many keys a thread has; the tenant's thread index and tombstones
local own, threads, stones = 12, KEYS[13], KEYS[14]
-- the tenant's retention indexes (checkpoint_keys.TenantIndexes), and how many tenant keys
-- follow a thread's own
local sizes, firsts, ttls, dirty, shared = KEYS[15], KEYS[16], KEYS[17], KEYS[18], 6

-- Whether the tenant, or its thread whose member is `member`, is erased.
local function erased(member)
  return tombstoned(stones, 't:', 'h:' .. member)
end

-- The items of memfold.checkpoint_deltas.pack_items: a count, the lengths, then the items.
local function items_of(packed)
  local count = struct.unpack('<I4', packed)
  local out, at = {}, 5 + 4 * count
  for j = 1, count do
    local size = struct.unpack('<I4', packed, 1 + 4 * j)
    out[j] = string.sub(packed, at, at + size - 1)
    at = at + size
  end
  return out
end

local function first_item(packed)
  local count = struct.unpack('<I4', packed)
  if count == 0 then return '' end
  local size = struct.unpack('<I4', packed, 5)
  local at = 5 + 4 * count
  return string.sub(packed, at, at + size - 1)
end

-- A checkpoint's pending writes, as field, value pairs.
local function writes_of(member)
  local pairs_ = {}
  local low, high = '[' .. member .. '\0', '(' .. member .. '\1'
  local fields = redis.call('ZRANGEBYLEX', write_index, low, high)
  if #fields > 0 then
    local values = redis.call('HMGET', writes, unpack(fields))
    for j, field in ipairs(fields) do
      if values[j] then
        pairs_[#pairs_ + 1] = field
        pairs_[#pairs_ + 1] = values[j]
      end
    end
  end
  return pairs_
end

local function chunked(command, key, list)
  for j = 1, #list, 1000 do
    redis.call(command, key, unpack(list, j, math.min(j + 999, #list)))
  end
end

local function version()
  return redis.call('HGET', info, 'v') or '0'
end
"""
)

READ = Script(
    _HELPERS
    + r"""
-- ARGV[1] mode: 'newest' (ARGV[2] namespace), 'range' (ARGV[2] namespace, ARGV[3] the id to
-- list before, or '', ARGV[4] limit, -1 for all) or 'members' (ARGV[2..] members).
-- Returns {rows, checkpoint...}: rows is field, header, payload for every row the checkpoints
-- read (chains included, each once); each checkpoint is {member, record, metadata, writes},
-- writes being field, value pairs.
local members
if ARGV[1] == 'members' then
  members = {unpack(ARGV, 2)}
else
  local ns = ARGV[2]
  local high, limit = '(' .. ns .. '\1', 1
  if ARGV[1] == 'range' then
    if ARGV[3] ~= '' then high = '(' .. ns .. '\0' .. ARGV[3] end
    limit = tonumber(ARGV[4])
  end
  members = redis.call('ZREVRANGEBYLEX', ids, high, '[' .. ns .. '\0', 'LIMIT', 0, limit)
end
local rows, seen, out = {}, {}, {}
out[1] = rows
for _, member in ipairs(members) do
  local record = redis.call('HGET', records, member)
  if record then
    local found = redis.call('HGET', roots, member)
    if found then
      for _, field in ipairs(items_of(found)) do
        while field ~= '' and not seen[field] do
          local header = redis.call('HGET', headers, field)
          if not header then break end
          seen[field] = true
          rows[#rows + 1] = field
          rows[#rows + 1] = header
          rows[#rows + 1] = redis.call('HGET', payloads, field) or ''
          field = first_item(header)
        end
      end
    end
    local meta = redis.call('HGET', metadata, member) or '{}'
    out[#out + 1] = {member, record, meta, writes_of(member)}
  end
end
return out
"""
)

WALK = Script(
    _HELPERS
    + r"""
-- ARGV: namespace, the checkpoint id to start from, how many of its ancestors to read at most.
-- Returns {member, parent id, versions, refs, rows, writes} for that checkpoint and its
-- ancestors along parents, nearest first (rows: the fields of the value rows it reads that
-- exist and hold a value; writes: field, value pairs), until a parent is missing or the limit
-- is reached (parents that loop are walked round again: the caller finds them).
local ns, id, left = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
while id ~= '' and left >= 0 do
  local member = ns .. '\0' .. id
  local record = redis.call('HGET', records, member)
  if not record then break end
  local held = {}
  local found = redis.call('HGET', roots, member)
  if found then
    for _, field in ipairs(items_of(found)) do
      local header = redis.call('HGET', headers, field)
      if header and items_of(header)[2] ~= 'empty' then held[#held + 1] = field end
    end
  end
  local fields_ = items_of(record)
  out[#out + 1] = {member, fields_[1], fields_[5], fields_[6], held, writes_of(member)}
  id, left = fields_[1], left - 1
end
return out
"""
)

PUT_READ = Script(
    _HELPERS
    + r"""
-- ARGV[1]: the parent's member, or ''; ARGV[2..]: row fields a new value may land on.
-- Returns {v, parent record or '', {field, header} of each row the parent reads, the header
-- (or '') of each ARGV[2..] field}.
local parent, bases, found = '', {}, {}
if ARGV[1] ~= '' then
  parent = redis.call('HGET', records, ARGV[1]) or ''
  local packed = redis.call('HGET', roots, ARGV[1])
  if parent ~= '' and packed then
    for _, field in ipairs(items_of(packed)) do
      local header = redis.call('HGET', headers, field)
      if header then
        bases[#bases + 1] = field
        bases[#bases + 1] = header
      end
    end
  end
end
for j = 2, #ARGV do
  found[#found + 1] = redis.call('HGET', headers, ARGV[j]) or ''
end
return {version(), parent, bases, found}
"""
)

APPLY = Script(
    _HELPERS
    + r"""
-- ARGV: 1 expected v ('' skips the check), 2 now (µs; '' for a removal, which neither
-- stamps the thread's last write nor refreshes its expiry), 3 default TTL (ms, 0 for none),
-- 4 lease writer ('' for none), 5 lease end (µs), 6 handover ('1'/'0'; plus 2 for pending
-- writes, whose lease is neither checked nor taken while member 7 is not stored), 7 the member
-- whose being the namespace's newest checkpoint hands the lease over ('' for none), 8 the thread's
-- member in the tenant index, 9 '1' to bump v, then mutations:
--   H key field value | N key field value (HSETNX) | D key field | Z key score member |
--   R key member (ZREM) | S key member (SADD) | C member (drop a checkpoint and its writes)
-- where key is an index into KEYS. Returns {'ok'}, {'stale'} (v moved: read again), or
-- {'lease', holder, lease end} (another writer's lease is live: nothing changed); a write
-- (not a removal) to an erased thread fails with memfold-erased.
if ARGV[2] ~= '' and erased(ARGV[8]) then return redis.error_reply('memfold-erased') end
if ARGV[1] ~= '' and ARGV[1] ~= version() then return {'stale'} end
local now = tonumber(ARGV[2]) or 0
local mode = tonumber(ARGV[6])
if ARGV[4] ~= '' and (mode < 2 or redis.call('ZSCORE', ids, ARGV[7])) then
  local lease = redis.call('HMGET', info, 'w', 'l')
  if lease[1] and lease[1] ~= ARGV[4] and tonumber(lease[2]) > now then
    local continues = false
    if mode % 2 == 1 and ARGV[7] ~= '' then
      local cut = string.find(ARGV[7], '\0', 1, true)
      local ns = string.sub(ARGV[7], 1, cut - 1)
      local head = redis.call(
        'ZREVRANGEBYLEX', ids, '(' .. ns .. '\1', '[' .. ns .. '\0', 'LIMIT', 0, 1)
      continues = head[1] == ARGV[7]
    end
    if not continues then return {'lease', lease[1], lease[2]} end
  end
  redis.call('HSET', info, 'w', ARGV[4], 'l', ARGV[5])
end
local function drop(member)
  redis.call('ZREM', ids, member)
  redis.call('ZREM', ages, member)
  redis.call('HDEL', records, member)
  redis.call('HDEL', metadata, member)
  redis.call('HDEL', roots, member)
  local low, high = '[' .. member .. '\0', '(' .. member .. '\1'
  local fields = redis.call('ZRANGEBYLEX', write_index, low, high)
  chunked('HDEL', writes, fields)
  redis.call('ZREMRANGEBYLEX', write_index, low, high)
end
local checkpoints = {}  -- members added to ids: 1 if new, 0 if put again
local j = 10
while j <= #ARGV do
  local op = ARGV[j]
  if op == 'H' then
    redis.call('HSET', KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2], ARGV[j + 3])
    j = j + 4
  elseif op == 'N' then
    redis.call('HSETNX', KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2], ARGV[j + 3])
    j = j + 4
  elseif op == 'D' then
    redis.call('HDEL', KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2])
    j = j + 3
  elseif op == 'Z' then
    local added = redis.call('ZADD', KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2], ARGV[j + 3])
    if KEYS[tonumber(ARGV[j + 1])] == ids then checkpoints[ARGV[j + 3]] = added end
    j = j + 4
  elseif op == 'R' then
    redis.call('ZREM', KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2])
    j = j + 3
  elseif op == 'S' then
    redis.call('SADD', KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2])
    j = j + 3
  elseif op == 'C' then
    drop(ARGV[j + 1])
    j = j + 2
  else
    return redis.error_reply('memfold: unknown checkpoint mutation ' .. tostring(op))
  end
end
if ARGV[9] == '1' then redis.call('HINCRBY', info, 'v', 1) end
for m, new in pairs(checkpoints) do
  if new == 0 then redis.call('ZADD', dirty, 0, ARGV[8]) end
  local ns = string.sub(m, 1, string.find(m, '\0', 1, true) - 1)
  local low, high = '[' .. ns .. '\0', '(' .. ns .. '\1'
  redis.call('ZADD', sizes, 'GT', redis.call('ZLEXCOUNT', ids, low, high), ARGV[8])
  local top = redis.call('ZREVRANGEBYLEX', ids, high, low, 'LIMIT', 0, 2)
  local older = m
  if top[1] == m then older = top[2] end
  local created = older and redis.call('ZSCORE', ages, older)
  if created then redis.call('ZADD', firsts, 'LT', created, ARGV[8]) end
end
if ARGV[2] == '' then return {'ok'} end
redis.call('HSET', info, 'u', ARGV[2])
redis.call('ZADD', threads, ARGV[2], ARGV[8])
local ttl = tonumber(redis.call('HGET', info, 't') or ARGV[3])
if ttl > 0 then
  for k = 1, own do redis.call('PEXPIRE', KEYS[k], ttl) end
end
return {'ok'}
"""
)

DUMP = Script(
    _HELPERS
    + r"""
-- ARGV[1]: '1' to include payloads, records and write values. Returns {v, info, members with
-- creation times, metadata, roots, headers, write fields, [payloads, records, writes]}, each
-- hash as a flat field, value list.
local out = {
  version(), redis.call('HGETALL', info), redis.call('ZRANGE', ages, 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', metadata), redis.call('HGETALL', roots), redis.call('HGETALL', headers),
  redis.call('ZRANGE', write_index, 0, -1),
}
if ARGV[1] == '1' then
  out[8] = redis.call('HGETALL', payloads)
  out[9] = redis.call('HGETALL', records)
  out[10] = redis.call('HGETALL', writes)
end
return out
"""
)

_DELETE_THREAD = r"""
-- Deletes the thread whose member is `member` (its runs indexed under `base`); returns
-- {checkpoints, rows, writes} it held.
local function delete_thread(member, base)
  local removed = {
    redis.call('ZCARD', ids), redis.call('HLEN', headers), redis.call('HLEN', writes)
  }
  for _, run in ipairs(redis.call('SMEMBERS', runs)) do
    redis.call('SREM', base .. run, member)
  end
  for k = 1, own do redis.call('DEL', KEYS[k]) end
  for _, index in ipairs({threads, sizes, firsts, ttls, dirty}) do
    redis.call('ZREM', index, member)
  end
  return removed
end
"""

DELETE = Script(
    _HELPERS
    + _DELETE_THREAD
    + r"""
-- ARGV: the thread's member, the tenant's run-index key base. Deletes the thread; returns
-- {checkpoints, rows, writes} it held.
return delete_thread(ARGV[1], ARGV[2])
"""
)

COPY = Script(
    _HELPERS
    + r"""
-- KEYS[19..30]: the target thread's own keys. ARGV: target member, now (µs), run-index key
-- base, default TTL (ms), the source's member (whose retention index scores the target takes).
-- Copies every key but the info hash (the journal included, so a copied thread replays its
-- tools' calls too). Returns how many checkpoints were copied, or -1 if the target already has
-- checkpoints; fails with memfold-erased if the target is erased.
local copied = redis.call('ZCARD', ids)
if copied == 0 then return 0 end
if erased(ARGV[1]) then return redis.error_reply('memfold-erased') end
local to = own + shared  -- KEYS[k + to] is the target's KEYS[k]
if redis.call('ZCARD', KEYS[2 + to]) > 0 then return -1 end
for k = 2, own do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    redis.call('COPY', KEYS[k], KEYS[k + to], 'REPLACE')
  else
    redis.call('DEL', KEYS[k + to])
  end
end
redis.call('DEL', KEYS[1 + to])
redis.call('HSET', KEYS[1 + to], 'v', 1, 'u', ARGV[2])
redis.call('ZADD', threads, ARGV[2], ARGV[1])
for _, index in ipairs({sizes, firsts, dirty}) do
  local score = redis.call('ZSCORE', index, ARGV[5])
  if score then redis.call('ZADD', index, score, ARGV[1]) end
end
for _, run in ipairs(redis.call('SMEMBERS', runs)) do
  redis.call('SADD', ARGV[3] .. run, ARGV[1])
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  for k = 1 + to, own + to do redis.call('PEXPIRE', KEYS[k], ttl) end
end
return copied
"""
)

SET_TTL = Script(
    _HELPERS
    + r"""
-- ARGV: the thread's own TTL in ms ('' clears it), the default TTL (ms, 0 for none), the
-- thread's member. Returns 1 if the thread exists (and its keys now expire that long from
-- now), else 0.
if redis.call('EXISTS', info) == 0 then return 0 end
local ttl = tonumber(ARGV[2])
if ARGV[1] == '' then
  redis.call('HDEL', info, 't')
  redis.call('ZREM', ttls, ARGV[3])
else
  redis.call('HSET', info, 't', ARGV[1])
  redis.call('ZADD', ttls, ARGV[1], ARGV[3])
  ttl = tonumber(ARGV[1])
end
for k = 1, own do
  if ttl > 0 then redis.call('PEXPIRE', KEYS[k], ttl) else redis.call('PERSIST', KEYS[k]) end
end
return 1
"""
)

RELEASE = Script(
    _HELPERS
    + r"""
-- ARGV[1]: the writer. Ends its lease; returns 1 if it held one.
if redis.call('HGET', info, 'w') ~= ARGV[1] then return 0 end
redis.call('HDEL', info, 'w', 'l')
return 1
"""
)

MARK_WHOLE = Script(
    _HELPERS
    + r"""
-- ARGV[1]: a warm-up's token. Marks the thread as held whole (see
-- memfold.backends.tiered_checkpoints) if that warm-up claimed it last and nothing deleted it
-- since; returns 1 if it did. Removals never copy the mark, and COPY starts the target without it.
if redis.call('HGET', info, 'warming') ~= ARGV[1] then return 0 end
redis.call('HDEL', info, 'warming')
redis.call('HSET', info, 'whole', ARGV[1])
return 1
"""
)

CLAIM_WHOLE = Script(
    _HELPERS
    + _DELETE_THREAD
    + r"""
-- ARGV: the thread's member, the tenant's run-index key base, a warm-up's token, a number of
-- milliseconds. Deletes the thread and records the warm-up as copying it in (see MARK_WHOLE),
-- keeping the marks of the writes in flight (START_WRITE) that started less than that long
-- ago: until they end, the copy is not served whole.
local now = redis.call('TIME')
local since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
local kept = {}
local fields = redis.call('HGETALL', info)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'f:' and tonumber(fields[i + 1]) > since then
    table.insert(kept, fields[i])
    table.insert(kept, fields[i + 1])
  end
end
delete_thread(ARGV[1], ARGV[2])
redis.call('HSET', info, 'warming', ARGV[3], unpack(kept))
"""
)

START_WRITE = Script(
    r"""
-- KEYS[1]: a thread's info hash; ARGV[1]: a write's token. Marks the write in flight (a tiered
-- store's, from before its durable write until its hot one is done), with the server's time in
-- milliseconds: IS_WHOLE finds the thread not whole until END_WRITE (or a warm-up long after).
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[1], 'f:' .. ARGV[1], string.format('%d', ms))
"""
)

IS_WHOLE = Script(
    r"""
-- KEYS[1]: a thread's info hash; ARGV[1]: a number of milliseconds. Returns {whole, busy}: the
-- token of the warm-up that marked the thread whole, or false if it is not marked or a write
-- is in flight; and 1 if a write in flight started less than that long ago, else 0.
local now = redis.call('TIME')
local since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local whole, flying, busy = false, false, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'f:' then
    flying = true
    if tonumber(fields[i + 1]) > since then busy = 1 end
  elseif fields[i] == 'whole' then
    whole = fields[i + 1]
  end
end
if flying then whole = false end
return {whole, busy}
"""
)

RECORD_EFFECT = Script(
    _HELPERS
    + r"""
-- ARGV: the entry's field in the journal, the entry, the default TTL (ms, 0 for none), the
-- thread's member. Stores the entry unless the field holds one; a new entry makes the journal
-- expire with its thread (or after the default TTL if the thread has no checkpoint yet).
-- Returns the stored entry; fails with memfold-erased if the thread is erased.
if erased(ARGV[4]) then return redis.error_reply('memfold-erased') end
if redis.call('HSETNX', journal, ARGV[1], ARGV[2]) == 1 then
  local ttl = redis.call('PTTL', info)
  if ttl == -2 then ttl = tonumber(ARGV[3]) end
  if ttl > 0 then redis.call('PEXPIRE', journal, ttl) end
end
return redis.call('HGET', journal, ARGV[1])
"""
)

DELETE_EFFECTS = Script(
    _HELPERS
    + r"""
-- Deletes the thread's journal (its checkpoints stay); returns how many entries it held.
local count = redis.call('HLEN', journal)
redis.call('DEL', journal)
return count
"""
)

BACKFILL = Script(
    r"""
-- KEYS: the tenant's indexes (`TenantIndexes.all`); ARGV: the tenant's checkpoint key base,
-- start, count. Indexes that page of the tenant's threads (by last write) exactly, and marks
-- them dirty (rows a re-put left behind before layout 3 are unknown); returns how many
-- threads the page held.
local start = tonumber(ARGV[2])
local page = redis.call('ZRANGE', KEYS[1], start, start + tonumber(ARGV[3]) - 1)
for _, member in ipairs(page) do
  local key = ARGV[1] .. member .. ':'
  local largest, oldest, ns, count, previous = 0, nil, nil, 0, nil
  local function close()
    if count > largest then largest = count end
  end
  for _, m in ipairs(redis.call('ZRANGE', key .. 'i', 0, -1)) do
    local here = string.sub(m, 1, string.find(m, '\0', 1, true) - 1)
    if here == ns then
      local created = tonumber(redis.call('ZSCORE', key .. 'a', previous))
      if created and (not oldest or created < oldest) then oldest = created end
      count = count + 1
    else
      close()
      ns, count = here, 1
    end
    previous = m
  end
  close()
  if largest > 0 then redis.call('ZADD', KEYS[2], largest, member) end
  if oldest then redis.call('ZADD', KEYS[3], string.format('%.0f', oldest), member) end
  local ttl = redis.call('HGET', key .. 'h', 't')
  if ttl then redis.call('ZADD', KEYS[4], ttl, member) end
  if largest > 0 then redis.call('ZADD', KEYS[5], 0, member) end
end
return #page
"""
)

ALL = (
    READ, PUT_READ, APPLY, DUMP, DELETE, COPY, SET_TTL, RELEASE, MARK_WHOLE, CLAIM_WHOLE,
    START_WRITE, IS_WHOLE, RECORD_EFFECT, DELETE_EFFECTS, BACKFILL,
)  # fmt: skip
"""Every script, for ``setup()`` to load up front."""
