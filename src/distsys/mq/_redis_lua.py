"""The Lua scripts behind the ``redis://`` broker, and the data model they share.

Under a namespace ``ns`` every key carries the hash tag ``{ns}`` (a namespace lives in
one Redis Cluster slot, so the scripts may touch keys they build themselves)::

    {ns}stream:<topic>               STREAM  the topic; one entry per message, fields:
                                             p payload, h headers (JSON, when any),
                                             k key (when any); a delayed message also
                                             has i, its id, and t, when it was published
                                             (Unix ms); published_at is otherwise the
                                             time in the entry's id
    {ns}delayed:<topic>              ZSET    delayed publishes: message id -> due (ms)
    {ns}delayed-msg:<topic>:<id>     HASH    a delayed message's stream fields
    {ns}retry:<topic>:<group>        ZSET    nacked messages: stream id -> due (ms)
    {ns}nacked:<topic>:<group>       HASH    stream id -> "<attempt>|<x-distsys headers>"
    {ns}ack-wait:<topic>             HASH    group -> its ack_wait in ms (for depth)

Each consumer group is a native Redis Streams consumer group, and its pending entries
list (PEL) is the truth about deliveries: the owner of an entry is the consumer holding
it, and its delivery counter is the attempt number. All due times are on the Redis
server's clock (``TIME``), so the clocks of clients do not matter.

- A delayed publish waits in the ``delayed`` ZSET; :data:`FETCH` moves the due ones
  into the stream (for every group), keeping the id given at publish time in field ``i``.
- A nack takes the entry out of the PEL (``XACK``) and files it in the group's ``retry``
  ZSET; when it falls due, :data:`FETCH` puts it back into the PEL with
  ``XCLAIM ... FORCE RETRYCOUNT <attempt + 1>`` — same entry, same id, attempt kept, and
  no other group sees anything. The ``x-distsys-*`` headers of the nacked delivery (the
  handler's error) are kept in ``nacked`` and laid over the entry's headers on every
  later delivery, until the message is acked.
- An ack or nack first checks, in the same script, that the PEL entry still belongs to
  this consumer with the delivery counter of this delivery; if another consumer (or
  this one, later) claimed it meanwhile, the ack is stale and changes nothing.
- Retention (:data:`FETCH` when asked to trim): an entry is deleted once no group
  needs it — not pending, delivered, not waiting in a ``retry`` ZSET — by ``XTRIM
  MINID`` to the oldest entry any group still needs. A topic without groups keeps
  everything. Consumers with nothing pending and idle for 5 minutes are deleted then too
  (a subscription deletes its own consumer when it closes holding nothing).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACK", "CREATE_GROUP", "DEPTH", "FETCH", "LEAVE", "NACK", "PUBLISH"]

_NOW: Final = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_FIELDS: Final = r"""
local function fields(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end
"""

PUBLISH: Final = (
    _NOW
    + r"""
-- A batch (or a delayed message), atomically.
-- KEYS: stream, delayed
-- ARGV: delayed-msg key prefix, then for each message:
--       delay in ms ('0': now), its id if delayed, number of fields, the fields...
-- Returns the ids in order: stream ids, and the given ids of delayed messages.
-- All or nothing: what could fail is checked before anything is written.
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= (key == KEYS[1] and 'stream' or 'zset') then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. kind)
  end
end
local ids, now = {}, nil
local i = 2
while i <= #ARGV do
  local delay, n = tonumber(ARGV[i]), tonumber(ARGV[i + 2])
  local flat = {unpack(ARGV, i + 3, i + 2 + n)}
  if delay > 0 then
    now = now or now_ms()
    redis.call('HSET', ARGV[1] .. ARGV[i + 1], 't', now, unpack(flat))
    redis.call('ZADD', KEYS[2], now + delay, ARGV[i + 1])
    ids[#ids + 1] = ARGV[i + 1]
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(flat))
  end
  i = i + 3 + n
end
return ids
"""
)

_BEFORE: Final = r"""
-- Whether stream id a sorts before stream id b, as the numbers "ms-seq" they are.
local function before(a, b)
  local i, j = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  if i ~= j then return i < j end  -- the longer time is the later
  if #a == #b then return a < b end  -- digits of equal lengths: as text
  local am, bm = string.sub(a, 1, i), string.sub(b, 1, j)
  if am ~= bm then return am < bm end
  return #a < #b
end
"""

_TRIM: Final = r"""
-- Delete the entries no group needs any more (see the module's docstring).
local function trim(stream, retry_prefix)
  local groups = redis.call('XINFO', 'GROUPS', stream)
  if #groups == 0 then return end
  local keep = nil
  local function need(id)
    if keep == nil or before(id, keep) then keep = id end
  end
  for _, flat in ipairs(groups) do
    local g = fields(flat)
    if g['pending'] > 0 then need(redis.call('XPENDING', stream, g['name'])[2]) end
    local undelivered = redis.call('XRANGE', stream, '(' .. g['last-delivered-id'], '+',
      'COUNT', 1)
    if undelivered[1] then need(undelivered[1][1]) end
    for _, id in ipairs(redis.call('ZRANGE', retry_prefix .. g['name'], 0, -1)) do
      need(id)
    end
    -- Consumers of ended subscriptions: with nothing pending, deleting one loses nothing
    -- (a live one is recreated by its next read).
    for _, flat in ipairs(redis.call('XINFO', 'CONSUMERS', stream, g['name'])) do
      local c = fields(flat)
      if c['pending'] == 0 and c['idle'] > 300000 then
        redis.call('XGROUP', 'DELCONSUMER', stream, g['name'], c['name'])
      end
    end
  end
  if keep == nil then
    redis.call('XTRIM', stream, 'MAXLEN', 0)
  else
    redis.call('XTRIM', stream, 'MINID', keep)
  end
end
"""

FETCH: Final = (
    _NOW
    + _FIELDS
    + _BEFORE
    + _TRIM
    + r"""
-- One consumer's fetch, without blocking (the client blocks with XREADGROUP after it).
-- KEYS: stream, delayed, retry, nacked
-- ARGV: group, consumer, count, min idle ms to reclaim (-1: do not look now),
--       XAUTOCLAIM cursor, delayed-msg key prefix,
--       retry key prefix to trim the stream ('': not now)
-- Returns {cursor ('' if it did not scan), ms until a delayed or nacked message falls
--          due (-1: none), lengths, items, number of redeliveries}: the deliveries as
--          a sequence of items — for a redelivery: its stream id, attempt, extra
--          headers ('' for none), number of fields, the fields; for a new entry: its
--          stream id, number of fields, the fields — concatenated into one string, with
--          the lengths of the items space-separated in another: two bulk strings parse
--          much faster in the client than a nested reply.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local now = now_ms()
local lengths, items, n, again = {}, {}, 0, 0

local function redeliver(id, flat, attempt, extra)
  local count = tostring(#flat)
  attempt = tostring(attempt)
  items[n + 1], items[n + 2], items[n + 3], items[n + 4] = id, attempt, extra, count
  lengths[n + 1], lengths[n + 2], lengths[n + 3], lengths[n + 4] = #id, #attempt, #extra, #count
  n = n + 4
  for i = 1, #flat do
    n = n + 1
    items[n], lengths[n] = flat[i], #flat[i]
  end
  again = again + 1
end

local function extra(rec)  -- a 'nacked' record's headers
  if not rec then return '' end
  return string.match(rec, '^%d+|(.*)$') or ''
end

-- 1. delayed publishes that fell due join the stream, for every group
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  local flat = redis.call('HGETALL', ARGV[6] .. id)
  if #flat > 0 then redis.call('XADD', stream, '*', unpack(flat)) end
  redis.call('DEL', ARGV[6] .. id)
end
if #due > 0 then redis.call('ZREM', KEYS[2], unpack(due)) end

-- 2. this group's nacked messages that fell due go back into the PEL, to this consumer
if want > 0 then
  local retry = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, want)
  for _, id in ipairs(retry) do
    local rec = redis.call('HGET', KEYS[4], id)
    local attempt = 1
    if rec then attempt = tonumber(string.match(rec, '^(%d+)|')) + 1 end
    local got = redis.call('XCLAIM', stream, group, consumer, 0, id,
      'FORCE', 'RETRYCOUNT', attempt)
    redis.call('ZREM', KEYS[3], id)
    if got[1] then
      redeliver(got[1][1], got[1][2], attempt, extra(rec))
      want = want - 1
    else
      redis.call('HDEL', KEYS[4], id)  -- the entry is gone from the stream
    end
  end
end

-- 3. deliveries not acked within ack_wait are claimed by this consumer
local cursor = ''  -- '': no scan this time
if want > 0 and tonumber(ARGV[4]) >= 0 then
  local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], ARGV[5],
    'COUNT', want)
  cursor = claimed[1]
  for _, entry in ipairs(claimed[2]) do
    local pel = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
    redeliver(entry[1], entry[2], pel[1][4], extra(redis.call('HGET', KEYS[4], entry[1])))
    want = want - 1
  end
end

-- 4. new messages
if want > 0 then
  local new = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
    'STREAMS', stream, '>')
  if new then
    local entries = new[1][2]
    for k = 1, #entries do
      local id, flat = entries[k][1], entries[k][2]
      local count = #flat
      items[n + 1], items[n + 2] = id, count
      lengths[n + 1], lengths[n + 2] = #id, #tostring(count)
      n = n + 2
      for i = 1, count do
        n = n + 1
        items[n], lengths[n] = flat[i], #flat[i]
      end
    end
  end
end

local wake = -1
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local left = math.max(tonumber(first[2]) - now, 1)
    if wake < 0 or left < wake then wake = left end
  end
end
if ARGV[7] ~= '' then trim(stream, ARGV[7]) end
return {cursor, wake, table.concat(lengths, ' '), table.concat(items), again}
"""
)

ACK: Final = (
    _BEFORE
    + r"""
-- KEYS: stream, nacked
-- ARGV: group, consumer,
--       "<stream id> <attempt> <stream id> <attempt> ..." (one argument: cheaper to send)
-- Returns a string with 1 (acked) or 0 (stale: no longer this delivery) for each.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ids, attempts, n = {}, {}, 0
local low, high = nil, nil
for id, attempt in string.gmatch(ARGV[3], '(%S+) (%d+)') do
  n = n + 1
  ids[n], attempts[n] = id, tonumber(attempt)
  if low == nil or before(id, low) then low = id end
  if high == nil or before(high, id) then high = id end
end
-- What this consumer holds from the lowest id to the highest, in one call (what else it
-- holds in between makes the reply longer, not wrong).
local held, limit = {}, n + 1000
local pel = redis.call('XPENDING', stream, group, low, high, limit, consumer)
for i = 1, #pel do held[pel[i][1]] = pel[i][4] end
if #pel == limit then  -- it holds more than that in between: ask for the missing ones
  for i = 1, n do
    if held[ids[i]] == nil then
      local one = redis.call('XPENDING', stream, group, ids[i], ids[i], 1, consumer)
      if one[1] then held[ids[i]] = one[1][4] end
    end
  end
end
local acked, results, m = {}, {}, 0
for i = 1, n do
  if held[ids[i]] == attempts[i] then
    held[ids[i]] = nil  -- the same delivery twice in one batch acks once
    m = m + 1
    acked[m] = ids[i]
    results[i] = '1'
  else
    results[i] = '0'
  end
end
local nacked = redis.call('EXISTS', KEYS[2]) == 1
for i = 1, m, 1000 do
  local last = math.min(i + 999, m)
  redis.call('XACK', stream, group, unpack(acked, i, last))
  if nacked then redis.call('HDEL', KEYS[2], unpack(acked, i, last)) end
end
return table.concat(results)
"""
)

NACK: Final = (
    _NOW
    + r"""
-- KEYS: stream, retry, nacked
-- ARGV: group, consumer, stream id, attempt, delay ms, x-distsys headers (JSON or '')
-- Returns 1 (filed for redelivery) or 0 (stale: no longer this delivery).
local pel = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if not (pel[1] and pel[1][4] == tonumber(ARGV[4])) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[5]), ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4] .. '|' .. ARGV[6])
return 1
"""
)

CREATE_GROUP: Final = r"""
-- KEYS: stream, ack-wait
-- ARGV: group, its ack_wait in ms ('': leave as is)
-- Returns 1 if the group was created, 0 if it existed.
local created = 1
local reply = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(reply) == 'table' and reply.err then
  if not string.find(reply.err, 'BUSYGROUP', 1, true) then return reply end
  created = 0
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return created
"""

LEAVE: Final = r"""
-- A subscription ends: delete its consumer if it holds nothing (else others reclaim).
-- KEYS: stream
-- ARGV: group, consumer
-- Returns 1 if deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local pel = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if pel.err or pel[1] then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

DEPTH: Final = (
    _FIELDS
    + _NOW
    + r"""
-- KEYS: stream, delayed, retry, ack-wait
-- ARGV: group
-- Returns {waiting, in flight, delayed}.
local delayed = redis.call('ZCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, delayed} end
local group = nil
for _, flat in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local g = fields(flat)
  if g['name'] == ARGV[1] then group = g end
end
if group == nil then return {redis.call('XLEN', KEYS[1]), 0, delayed} end
local lag = group['lag']
if not lag then  -- Redis cannot tell (entries were deleted mid-stream): count them
  lag = 0
  local from = '(' .. group['last-delivered-id']
  while true do
    local batch = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 1000)
    lag = lag + #batch
    if #batch < 1000 then break end
    from = '(' .. batch[#batch][1]
  end
end
local now = now_ms()
local retry_due = redis.call('ZCOUNT', KEYS[3], '-inf', now)
local retry_later = redis.call('ZCARD', KEYS[3]) - retry_due
local pending, expired = group['pending'], 0
local ack_wait = redis.call('HGET', KEYS[4], ARGV[1])
if pending > 0 and ack_wait then
  expired = #redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ack_wait, '-', '+', pending)
end
return {lag + retry_due + expired, pending - expired, delayed + retry_later}
"""
)
