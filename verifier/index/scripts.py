"""The index's Lua scripts: each is one atomic step on keys of one hash tag.

Every key a script touches is passed in KEYS (Redis Cluster routes on them, and all
share the namespace's hash tag). Errors are returned as ``-CODE detail`` replies
that :mod:`verifier.index.writer` turns into exceptions; a script checks everything
before its first write, so an error never leaves a half-applied step (Redis does
not roll a script back).
"""

from __future__ import annotations

# Shared prologue: the caller's fencing token must be the current leader's.
_CHECK_FENCE = """
local lock = redis.call('GET', KEYS[2])
if not lock then
  return redis.error_reply('STALE_FENCE no leader holds the lock')
end
local held = string.match(lock, '^(%d+):')
if held ~= ARGV[2] then
  return redis.error_reply('STALE_FENCE the lock is held with fence ' .. tostring(held))
end
"""

_NOW = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
"""

# KEYS: 1 leader, 2 fence counter. ARGV: 1 owner, 2 ttl ms, 3 the lock's value to take over
# ('' = none: only a free lock is taken).
# Returns the fencing token (re-entrant for the same owner), or nil when held by another.
# ARGV[3] lets a restarted sync job reclaim the lock of its own dead predecessor at once
# (verifier.sync.job: same instance identity, predecessor's pid gone) instead of waiting
# out the TTL; the new token is higher, so the predecessor's writes are refused anyway.
ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v then
  local f, owner = string.match(v, '^(%d+):(.*)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(f)
  end
  if ARGV[3] == '' or v ~= ARGV[3] then
    return false
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- Seed from the clock (us) so tokens keep growing across a FLUSHALL.
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', t[2]))
end
local f = redis.call('INCR', KEYS[2])
-- %d: Lua would print a number this large in exponent notation.
redis.call('SET', KEYS[1], string.format('%d', f) .. ':' .. ARGV[1], 'PX', ARGV[2])
return f
"""

# KEYS: 1 leader. ARGV: 1 "<fence>:<owner>", 2 ttl ms. Returns 1 when still held.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: 1 leader. ARGV: 1 "<fence>:<owner>". Returns 1 when released.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: 1 gens, 2 leader, 3 meta of the new generation.
# ARGV: 1 generation, 2 fence, 3 buckets.
# 'loaded' is the resync cursor: the snapshot records (stream positions) written so far
# (LOAD moves it with each chunk, atomically), so a leader that takes over resumes there.
BEGIN = (
    _CHECK_FENCE
    + _NOW
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('GENERATION_EXISTS ' .. ARGV[1])
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'state', 'loading', 'created', now, 'fence', ARGV[2],
           'buckets', ARGV[3], 'seq', '0', 'count', '0', 'loaded', '0')
return now
"""
)

# A new leader takes over a load its dead predecessor left (the resync resumes).
# KEYS: 1 leader, 2 meta of the loading generation. ARGV: 1 (unused), 2 fence.
# Returns the resync cursor ('loaded'); later LOADs of the old fence are refused.
ADOPT = (
    _CHECK_FENCE.replace("KEYS[2]", "KEYS[1]")
    + """
if redis.call('HGET', KEYS[2], 'state') ~= 'loading' then
  return redis.error_reply('SNAPSHOT_ABORTED the generation is not loading')
end
redis.call('HSET', KEYS[2], 'fence', ARGV[2])
return redis.call('HGET', KEYS[2], 'loaded')
"""
)

# One chunk of a snapshot load: the records and the resync cursor together, fenced.
# KEYS: 1 leader, 2 meta of the loading generation, 3.. record keys.
# ARGV: 1 resync cursor after this chunk (stream position), 2 fence, 3.. the records' bytes.
# Refused for a stale fence (the lock's) or a load another leader adopted (the meta's).
LOAD = (
    _CHECK_FENCE.replace("KEYS[2]", "KEYS[1]")
    + """
local meta = redis.call('HMGET', KEYS[2], 'state', 'fence')
if meta[1] ~= 'loading' then
  return redis.error_reply('SNAPSHOT_ABORTED the generation is not loading')
end
if meta[2] ~= ARGV[2] then
  return redis.error_reply('STALE_FENCE the load was taken over by fence ' .. tostring(meta[2]))
end
if #KEYS > 2 then
  local pairs = {}
  for i = 3, #KEYS do
    pairs[2 * i - 5] = KEYS[i]
    pairs[2 * i - 4] = ARGV[i]
  end
  redis.call('MSET', unpack(pairs))  -- one call: a chunk is at most 500 records (1,000 values)
end
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[2], 'loaded') or '0') then
  redis.call('HSET', KEYS[2], 'loaded', ARGV[1])
end
return 1
"""
)

# KEYS: 1 current, 2 leader, 3 meta of the loaded generation, 4 the change stream.
# ARGV: 1 pointer of the loaded generation, 2 fence, 3 seq, 4 feed id, 5 count,
#       6 channel, 7 switch message, 8 upstream time ('' when unknown),
#       9 generation, 10 change stream maxlen.
# Appends the switch marker to the change stream (verifier.index.change_stream).
# Returns the previous pointer (or nil).
COMMIT = (
    _CHECK_FENCE
    + _NOW
    + """
if redis.call('HGET', KEYS[3], 'state') ~= 'loading' then
  return redis.error_reply('SNAPSHOT_ABORTED the generation is not loading')
end
local previous = redis.call('GET', KEYS[1])
-- The snapshot is consistent with the upstream as of some time after the load began:
-- claim no more freshness than that until the first heartbeat.
local created = redis.call('HGET', KEYS[3], 'created')
redis.call('HSET', KEYS[3], 'state', 'live', 'seq', ARGV[3], 'feed', ARGV[4],
           'count', ARGV[5], 'as_of', created, 'hb_seq', ARGV[3], 'committed', now,
           'upstream_time', ARGV[8])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'k', 'switch', 'f', ARGV[4], 's', ARGV[3],
           'g', ARGV[9])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return previous
"""
)

# The ``v`` of a stored record. The compact layout (verifier.index.stored) has it first,
# an integer; msgspec's layout (a PermitRecord array, ``vidx`` the place of v) starts
# with the permit number, a str: the str fields before v are stepped over by their
# headers, ~0.3 us against ~2 us for cmsgpack.unpack of the whole record; any other
# shape goes to cmsgpack.unpack.
_STORED_V = """
local function stored_v(raw, vidx)
  local head = string.byte(raw, 1)
  local pos
  if head >= 0x90 and head <= 0x9f then pos = 2 elseif head == 0xdc then pos = 4 else
    return cmsgpack.unpack(raw)[vidx]
  end
  local first = string.byte(raw, pos)
  if first and (first < 0x80 or (first >= 0xcc and first <= 0xcf)) then vidx = 1 end
  for _ = 1, vidx - 1 do
    local b = string.byte(raw, pos)
    if not b then return cmsgpack.unpack(raw)[vidx] end
    if b >= 0xa0 and b <= 0xbf then pos = pos + 1 + (b - 0xa0)
    elseif b == 0xd9 then pos = pos + 2 + string.byte(raw, pos + 1)
    else return cmsgpack.unpack(raw)[vidx] end
  end
  local b = string.byte(raw, pos)
  if not b then return cmsgpack.unpack(raw)[vidx] end
  if b < 0x80 then return b end
  if b == 0xcc then return string.byte(raw, pos + 1) end
  if b == 0xcd then local x, y = string.byte(raw, pos + 1, pos + 2); return x * 256 + y end
  if b == 0xce then
    local w, x, y, z = string.byte(raw, pos + 1, pos + 4)
    return ((w * 256 + x) * 256 + y) * 256 + z
  end
  return cmsgpack.unpack(raw)[vidx]
end
"""

# One page of the change feed, atomically with the cursor (planned by
# verifier.index.apply_plan; its ApplyArgs has one field per argument, these names).
# KEYS: 1 current, 2 leader, 3 meta, 4..3+n record keys, 4+n..3+n+m bucket keys (one per op),
#       4+n+m the change stream.
# ARGV:
#   1  pointer         the live generation's pointer the page was planned on
#   2  fence
#   3  stored_cursor   the cursor as read (refused if it moved since)
#   4  cursor          the new cursor
#   5  records         n, the record triples below
#   6  lookups         m, the look-up triples below
#   7  channel
#   8  message         '' = publish nothing
#   9  v_index         index of `v` in a record array
#   10 added           permits added (count delta)
#   11 feed            the live generation's feed id
#   12 stream_maxlen   entries the change stream keeps (about)
#   13 entries         k, the change entries below
#   14 cursor_entry    '1': append a cursor entry after them
#   then n record_triples (expected old v or -1, new v, new record bytes),
#   then m lookup_triples (op '+' or '-', id, permit number),
#   then k change_entries (type, seq, permit number, record, upstream time, employer before or '').
# Each applied event goes to the change stream (verifier.index.change_stream) with the
# cursor in the same script: no change without its entry, no entry without its change.
APPLY = (
    _STORED_V
    + _CHECK_FENCE
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('GENERATION_CHANGED the live generation is not ' .. ARGV[1])
end
local stored = redis.call('HGET', KEYS[3], 'seq')
if stored ~= ARGV[3] then
  return redis.error_reply('CURSOR_MOVED ' .. tostring(stored))
end
local n = tonumber(ARGV[5])
local m = tonumber(ARGV[6])
local vidx = tonumber(ARGV[9])
local base = 14
-- Version guard, all checked before the first write.
-- The stored v is read from the stored bytes; the new v is the caller's (it encoded
-- the record from the same struct).
for i = 1, n do
  local expected = tonumber(ARGV[base + 3 * i - 2])
  local old = redis.call('GET', KEYS[3 + i])
  local old_v = -1
  if old then old_v = stored_v(old, vidx) end
  if old_v ~= expected then
    return redis.error_reply('RECORD_MOVED ' .. KEYS[3 + i])
  end
  if not (tonumber(ARGV[base + 3 * i - 1]) > old_v) then
    return redis.error_reply('VERSION_NOT_HIGHER ' .. KEYS[3 + i])
  end
end
-- The records in MSETs of up to 500 (one redis.call per record cost ~1 us more each).
local pairs_, np = {}, 0
for i = 1, n do
  pairs_[np + 1] = KEYS[3 + i]; pairs_[np + 2] = ARGV[base + 3 * i]; np = np + 2
  if np >= 1000 or i == n then
    redis.call('MSET', unpack(pairs_, 1, np))
    np = 0
  end
end
local obase = base + 3 * n
for j = 1, m do
  local key = KEYS[3 + n + j]
  local op = ARGV[obase + 3 * j - 2]
  local id = ARGV[obase + 3 * j - 1]
  local pn = ARGV[obase + 3 * j]
  local value = redis.call('HGET', key, id)
  local pns = {}
  local present = false
  if value then
    for p in string.gmatch(value, '%S+') do
      if p == pn then present = true else table.insert(pns, p) end
    end
  end
  if op == '+' then
    if not present then
      if value then redis.call('HSET', key, id, value .. ' ' .. pn)
      else redis.call('HSET', key, id, pn) end
    end
  elseif present then
    if #pns == 0 then redis.call('HDEL', key, id)
    else redis.call('HSET', key, id, table.concat(pns, ' ')) end
  end
end
redis.call('HSET', KEYS[3], 'seq', ARGV[4])
if ARGV[10] ~= '0' then redis.call('HINCRBY', KEYS[3], 'count', ARGV[10]) end
local stream = KEYS[4 + n + m]
local ebase = obase + 3 * m
for e = 1, tonumber(ARGV[13]) do
  local a = ebase + 6 * (e - 1)
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[12], '*', 'k', ARGV[a + 1], 'f', ARGV[11], 's', ARGV[a + 2],
             'p', ARGV[a + 3], 'r', ARGV[a + 4], 't', ARGV[a + 5], 'pe', ARGV[a + 6], 'c0', ARGV[3])
end
if ARGV[14] == '1' then
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[12], '*', 'k', 'cursor', 'f', ARGV[11], 'c0', ARGV[3],
             'c1', ARGV[4])
end
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return 1
"""
)

# KEYS: 1 current, 2 leader, 3 meta. ARGV: 1 pointer, 2 fence, 3 seq, 4 upstream time.
HEARTBEAT = (
    _CHECK_FENCE
    + _NOW
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('GENERATION_CHANGED the live generation is not ' .. ARGV[1])
end
local stored = tonumber(redis.call('HGET', KEYS[3], 'seq'))
if stored < tonumber(ARGV[3]) then
  return redis.error_reply('CURSOR_BEHIND ' .. tostring(stored))
end
redis.call('HSET', KEYS[3], 'as_of', now, 'hb_seq', ARGV[3], 'upstream_time', ARGV[4])
return now
"""
)

# Secondary look-up of many ids, first half: the permit numbers each id maps to, in
# one command (read-only, so it may run on a replica). The reader then reads the
# records with one MGET that checks the generation again (reader.py), with no record
# passing through Lua: returning them from here (an MGET inside the script) made each
# record be copied into a Lua string and back into the reply, ~40% of a bulk look-up's
# server time (10,000 ids: 39 ms of EVALSHA against 16 ms for the mappings alone plus
# 9 ms for an MGET of the records, on one quiet machine).
# KEYS: 1 current, then the bucket of each id, in order.
# ARGV: 1 pointer the caller read, 2 unused (kept so KEYS and ARGV line up as before),
# then the bucket field of each id.
# Returns {-1, current} when the live generation is another; else one value per id,
# in order: the bucket's value ("pn" or "pn pn ..." for an id on several permits, or
# for ids sharing a crc32), or nil (no mapping).
LOOKUP = """#!lua flags=no-writes
local live = redis.call('GET', KEYS[1])
if live ~= ARGV[1] then return {-1, live} end
local out = {}
for i = 2, #KEYS do
  out[i - 1] = redis.call('HGET', KEYS[i], ARGV[i + 1])
end
return out
"""
