"""The Lua scripts behind ``redis://``: one atomic script per mutating operation.

Data model, under a namespace ``ns`` whose keys all carry the hash tag ``{ns}`` (so a
namespace lives in one Redis Cluster slot)::

    {ns}k:<key>           HASH   value, version, lease ("" for none); PEXPIRE of its lease
    {ns}keys              ZSET   every key, score 0: ZRANGEBYLEX serves prefix listing
    {ns}seq               STRING change sequence number, INCR'd by every published change
    {ns}lease-seq         STRING lease id counter (starts at the server's time in µs)
    {ns}lease:<id>        STRING the lease's TTL in ms, with that PEXPIRE
    {ns}lease:<id>:keys   SET    keys attached to the lease, same PEXPIRE
    {ns}changes           pub/sub channel of changes

A leased key's hash expires together with its lease, so Redis deletes it even when no
client is connected; the index may then hold members whose hash is gone: readers skip
them and the snapshot script removes them.

Every change is published on ``{ns}changes`` as ``seq NUL type NUL version NUL lease NUL
key NUL value`` (type ``P`` put, ``D`` delete, ``M`` a watcher's snapshot marker, whose
key field is the watcher's token). Keys never contain NUL, so the value may.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DELETE", "GRANT", "KEEP_ALIVE", "REVOKE", "SNAPSHOT", "WRITE"]

WRITE: Final = r"""
-- put and compare_and_set.
-- KEYS: hash, index, seq, [lease, lease keys]
-- ARGV: ns, key, value, lease id or '', expected version (-1: any), channel
-- Returns {1, version} written, {0} version mismatch, {-1} lease gone.
local old = redis.call('HMGET', KEYS[1], 'version', 'lease')
local version = 0
if old[1] then version = tonumber(old[1]) end
local expected = tonumber(ARGV[5])
if expected >= 0 and version ~= expected then return {0} end
local lease = ARGV[4]
local ttl = 0
if lease ~= '' then
  ttl = redis.call('PTTL', KEYS[4])
  if ttl <= 0 then return {-1} end
end
local held = old[2] or ''
if held ~= '' and held ~= lease then
  redis.call('SREM', ARGV[1] .. 'lease:' .. held .. ':keys', ARGV[2])
end
redis.call('HSET', KEYS[1], 'value', ARGV[3], 'version', version + 1, 'lease', lease)
if lease ~= '' then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('SADD', KEYS[5], ARGV[2])
  redis.call('PEXPIRE', KEYS[5], ttl)
elseif held ~= '' then
  redis.call('PERSIST', KEYS[1])  -- only a leased hash has a TTL to drop
end
if version == 0 then
  redis.call('ZADD', KEYS[2], 0, ARGV[2])  -- a live key is always in the index already
end
version = version + 1
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[6], string.format('%d', seq) .. '\0P\0' ..
  string.format('%d', version) .. '\0' .. lease .. '\0' .. ARGV[2] .. '\0' .. ARGV[3])
return {1, version}
"""

DELETE: Final = r"""
-- KEYS: hash, index, seq
-- ARGV: ns, key, channel
-- Returns 1 deleted, 0 absent.
local old = redis.call('HMGET', KEYS[1], 'version', 'lease')
redis.call('ZREM', KEYS[2], ARGV[2])
if not old[1] then return 0 end
redis.call('DEL', KEYS[1])
if old[2] and old[2] ~= '' then
  redis.call('SREM', ARGV[1] .. 'lease:' .. old[2] .. ':keys', ARGV[2])
end
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[3], string.format('%d', seq) .. '\0D\0\0\0' .. ARGV[2] .. '\0')
return 1
"""

GRANT: Final = r"""
-- KEYS: lease-seq
-- ARGV: ns, ttl in ms
-- Returns the new lease id. Ids start from the server's clock in microseconds, so a
-- Redis that lost its data (a restart without persistence) does not hand out the ids
-- of leases that old clients still hold.
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], string.format('%d', tonumber(now[1]) * 1000000 + tonumber(now[2])))
end
local id = string.format('%d', redis.call('INCR', KEYS[1]))
redis.call('SET', ARGV[1] .. 'lease:' .. id, ARGV[2], 'PX', ARGV[2])
return tonumber(id)
"""

KEEP_ALIVE: Final = r"""
-- KEYS: lease, lease keys
-- ARGV: ns, lease id
-- Returns 1 extended, 0 gone.
local ttl = redis.call('GET', KEYS[1])
if not ttl then return 0 end
redis.call('PEXPIRE', KEYS[1], ttl)
local keys = redis.call('SMEMBERS', KEYS[2])
for _, key in ipairs(keys) do
  local hash = ARGV[1] .. 'k:' .. key
  if redis.call('HGET', hash, 'lease') == ARGV[2] then
    redis.call('PEXPIRE', hash, ttl)
  else
    redis.call('SREM', KEYS[2], key)
  end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""

REVOKE: Final = r"""
-- KEYS: lease, lease keys, index, seq
-- ARGV: ns, lease id, channel
-- Returns 1 revoked, 0 already gone.
if redis.call('DEL', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
local keys = redis.call('SMEMBERS', KEYS[2])
table.sort(keys)
for _, key in ipairs(keys) do
  local hash = ARGV[1] .. 'k:' .. key
  if redis.call('HGET', hash, 'lease') == ARGV[2] then
    redis.call('DEL', hash)
    redis.call('ZREM', KEYS[3], key)
    local seq = redis.call('INCR', KEYS[4])
    redis.call('PUBLISH', ARGV[3], string.format('%d', seq) .. '\0D\0\0\0' .. key .. '\0')
  end
end
redis.call('DEL', KEYS[2])
return 1
"""

SNAPSHOT: Final = r"""
-- list, and a watcher's consistent snapshot.
-- KEYS: index, seq
-- ARGV: ns, ZRANGEBYLEX min, max, channel, marker token ('' for none)
-- Returns {seq, {key, value, version, lease, key, value, ...}}; with a token, also
-- publishes a marker, so the watcher knows which changes the snapshot already holds.
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])
local out = {}
for _, key in ipairs(members) do
  local h = redis.call('HMGET', ARGV[1] .. 'k:' .. key, 'value', 'version', 'lease')
  if h[2] then
    out[#out + 1] = key
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
    out[#out + 1] = h[3]
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[4], string.format('%d', seq) .. '\0M\0\0\0' .. ARGV[5] .. '\0')
end
return {seq, out}
"""
