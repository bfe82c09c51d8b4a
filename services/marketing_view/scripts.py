"""The Lua scripts of the projection and the read. Each touches the keys of ONE customer (one hash tag)
or ONE card index, so each is atomic on a single Redis and on a Redis Cluster alike.

Stored values are JSON arrays whose first element is the version (``[7,...]``); the card index is
``version|owner|former owners`` (identifiers never contain ``|`` or spaces).

Pipelines run them with EVALSHA; when Redis answers NOSCRIPT (it restarted, or SCRIPT FLUSH), the
scripts are loaded again and the pipeline re-run: every script is idempotent, so re-running is harmless.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, ResponseError

_VERSION = """
local function version_of(v)
  if not v then return 0 end
  return tonumber(string.match(v, '^%[(%d+)')) or 0
end
"""

# KEYS: doc hash. ARGV: version, value. The segment list is longer than a compact hash entry may be
# (hash-max-listpack-value, 64 bytes by default), so it is stored in chunks "s0", "s1", ... of 60 bytes:
# the customer's hash stays a listpack, the most compact encoding Redis has.
PUT_SEGMENTS = _VERSION + """
if version_of(redis.call('HGET', KEYS[1], 's0')) >= tonumber(ARGV[1]) then return 0 end
local value, size = ARGV[2], 60
local n = math.ceil(#value / size)
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], 's' .. i, string.sub(value, i * size + 1, (i + 1) * size))
end
local i = n
while redis.call('HDEL', KEYS[1], 's' .. i) == 1 do i = i + 1 end
return 1
"""

# KEYS: doc hash. ARGV: field, version, value.
HSET_IF_NEWER = _VERSION + """
if version_of(redis.call('HGET', KEYS[1], ARGV[1])) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: doc hash, history zset. ARGV: digest, version, used_ms, compact row, full row, coupon code, meta.
# The coupon's name/type/value are stored once per code ("k<code>"); a row whose coupon was named
# differently (the catalog changed) carries its own.
PUT_REDEMPTION = _VERSION + """
local field = 'r' .. ARGV[1]
if version_of(redis.call('HGET', KEYS[1], field)) >= tonumber(ARGV[2]) then return 0 end
local mk = 'k' .. ARGV[6]
local meta = redis.call('HGET', KEYS[1], mk)
local row = ARGV[4]
if not meta then
  redis.call('HSET', KEYS[1], mk, ARGV[7])
elseif meta ~= ARGV[7] then
  row = ARGV[5]
end
redis.call('HSET', KEYS[1], field, row)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: card index. ARGV: version, new owner ('' = nobody), previous owner named by the event ('' = none).
# Returns {applied, owner, former owners}: applied = 0 when a newer state of the card is already known
# (an old event cannot move the card back), 2 when this version moved the index, 1 for the same version
# again (a retried batch re-places the card: the steps after this one converge).
MOVE_CARD = """
local cur = redis.call('GET', KEYS[1])
local v, owner, formers = 0, '', ''
if cur then
  local a, b, c = string.match(cur, '^(%d+)|([^|]*)|([^|]*)$')
  v, owner, formers = tonumber(a), b, c
end
local nv = tonumber(ARGV[1])
if nv < v then return {0, owner, formers} end
if nv > v then
  local set, list = {}, {}
  local function add(id)
    if id ~= '' and id ~= ARGV[2] and not set[id] then set[id] = true; list[#list + 1] = id end
  end
  for id in string.gmatch(formers, '%S+') do add(id) end
  add(owner)
  add(ARGV[3])
  owner, formers = ARGV[2], table.concat(list, ' ')
  redis.call('SET', KEYS[1], nv .. '|' .. owner .. '|' .. formers)
  return {2, owner, formers}
end
return {1, owner, formers}
"""

# KEYS: doc hash. ARGV: card id, version, value. Adds the card to the customer's card list "l".
PUT_CARD = _VERSION + """
local field = 'c' .. ARGV[1]
if version_of(redis.call('HGET', KEYS[1], field)) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], field, ARGV[3])
local l = redis.call('HGET', KEYS[1], 'l') or ''
if not string.find(' ' .. l .. ' ', ' ' .. ARGV[1] .. ' ', 1, true) then
  if l == '' then l = ARGV[1] else l = l .. ' ' .. ARGV[1] end
  redis.call('HSET', KEYS[1], 'l', l)
end
return 1
"""

# KEYS: doc hash. ARGV: card id, version. Removes the card if what the customer holds is older.
DROP_CARD = _VERSION + """
local field = 'c' .. ARGV[1]
local cur = redis.call('HGET', KEYS[1], field)
if not cur or version_of(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], field)
local kept = {}
for id in string.gmatch(redis.call('HGET', KEYS[1], 'l') or '', '%S+') do
  if id ~= ARGV[1] then kept[#kept + 1] = id end
end
if #kept == 0 then redis.call('HDEL', KEYS[1], 'l') else redis.call('HSET', KEYS[1], 'l', table.concat(kept, ' ')) end
return 1
"""

# Batched forms of the scripts above: ONE call writes many customers (on a single Redis) or all the writes of
# one customer (on a cluster, where the keys of one call must share a slot). Each ARGV[i] is a "blob":
# a 4-byte big-endian count, then that many fields, each a 4-byte big-endian length and its bytes. One
# argument per customer costs the client far less than one per field, and Redis's C struct library splits
# a blob in one call (a Lua loop over string.find/sub cost Redis about 50 us per typical customer).
_BLOB = """
local function fields(blob)
  local count = struct.unpack('>I4', blob)
  local f, pos = {}, 5
  while count > 0 do
    local take = math.min(count, 2000)  -- struct.unpack returns every field at once: bounded by the C stack
    local part = {struct.unpack('>' .. string.rep('I4c0', take), blob, pos)}
    pos = part[#part]
    for i = 1, take do f[#f + 1] = part[i] end
    count = count - take
  end
  return f
end
"""

# KEYS: doc hash and history zset of customer 1, of customer 2, ... ARGV[i]: customer i's writes, a blob of
#   S version value | I version value | R digest version used_ms compact full code meta |
#   P card_id version value | D card_id version
# (segments, insights, coupon row, put card, drop card: the checks and effects of PUT_SEGMENTS,
# HSET_IF_NEWER 'i', PUT_REDEMPTION, PUT_CARD, DROP_CARD, applied in order). Per customer it reads every
# field its writes look at with ONE HMGET, applies the writes to that copy, then stores the result with one
# HSET, one HDEL and one ZADD: a handful of commands per customer instead of about four per write.
# Returns one string per customer: '1' (changed) or '0' (unchanged) per write.
APPLY = _VERSION + _BLOB + """
local function bulk(command, key, list)  -- unpack() has a stack limit: at most 2000 arguments a call
  for i = 1, #list, 2000 do
    redis.call(command, key, unpack(list, i, math.min(#list, i + 1999)))
  end
end
local out = {}
for c = 1, #ARGV do
  local doc, hist = KEYS[2 * c - 1], KEYS[2 * c]
  local f = fields(ARGV[c])
  local want, wanted, p = {}, {}, 1
  local function need(name) if not wanted[name] then wanted[name] = true; want[#want + 1] = name end end
  while p <= #f do
    local op = f[p]
    if op == 'R' then need('r' .. f[p + 1]); need('k' .. f[p + 6]); p = p + 8
    elseif op == 'S' then need('s0'); p = p + 3
    elseif op == 'I' then need('i'); p = p + 3
    elseif op == 'P' then need('c' .. f[p + 1]); need('l'); p = p + 4
    elseif op == 'D' then need('c' .. f[p + 1]); need('l'); p = p + 3
    else return redis.error_reply('unknown write ' .. tostring(op)) end
  end
  local cur, set, del, zadd, done = {}, {}, {}, {}, {}
  for i = 1, #want, 2000 do
    local got = redis.call('HMGET', doc, unpack(want, i, math.min(#want, i + 1999)))
    for j = 1, #got do cur[want[i + j - 1]] = got[j] end
  end
  local function put(name, value) cur[name] = value; set[name] = value; del[name] = nil end
  local function remove(name) cur[name] = false; set[name] = nil; del[name] = true end
  local function list_without(card)
    local kept = {}
    for id in string.gmatch(cur['l'] or '', '%S+') do
      if id ~= card then kept[#kept + 1] = id end
    end
    if #kept == 0 then remove('l') else put('l', table.concat(kept, ' ')) end
  end
  p = 1
  while p <= #f do
    local op = f[p]
    if op == 'R' then
      local field, version = 'r' .. f[p + 1], tonumber(f[p + 2])
      if version_of(cur[field]) >= version then done[#done + 1] = '0' else
        local mk, meta, row = 'k' .. f[p + 6], f[p + 7], f[p + 4]
        if not cur[mk] then put(mk, meta) elseif cur[mk] ~= meta then row = f[p + 5] end
        put(field, row)
        zadd[#zadd + 1] = f[p + 3]
        zadd[#zadd + 1] = f[p + 1]
        done[#done + 1] = '1'
      end
      p = p + 8
    elseif op == 'S' then
      if version_of(cur['s0']) >= tonumber(f[p + 1]) then done[#done + 1] = '0' else
        local value, size = f[p + 2], 60
        local n = math.ceil(#value / size)
        for i = 0, n - 1 do put('s' .. i, string.sub(value, i * size + 1, (i + 1) * size)) end
        local i = n
        while redis.call('HEXISTS', doc, 's' .. i) == 1 do remove('s' .. i); i = i + 1 end
        done[#done + 1] = '1'
      end
      p = p + 3
    elseif op == 'I' then
      if version_of(cur['i']) >= tonumber(f[p + 1]) then done[#done + 1] = '0' else
        put('i', f[p + 2])
        done[#done + 1] = '1'
      end
      p = p + 3
    elseif op == 'P' then
      local card, field = f[p + 1], 'c' .. f[p + 1]
      if version_of(cur[field]) >= tonumber(f[p + 2]) then done[#done + 1] = '0' else
        put(field, f[p + 3])
        local l = cur['l'] or ''
        if not string.find(' ' .. l .. ' ', ' ' .. card .. ' ', 1, true) then
          if l == '' then put('l', card) else put('l', l .. ' ' .. card) end
        end
        done[#done + 1] = '1'
      end
      p = p + 4
    else  -- 'D'
      local card, field = f[p + 1], 'c' .. f[p + 1]
      if not cur[field] or version_of(cur[field]) >= tonumber(f[p + 2]) then done[#done + 1] = '0' else
        remove(field)
        list_without(card)
        done[#done + 1] = '1'
      end
      p = p + 3
    end
  end
  local pairs_out, gone = {}, {}
  for name, value in pairs(set) do pairs_out[#pairs_out + 1] = name; pairs_out[#pairs_out + 1] = value end
  for name in pairs(del) do gone[#gone + 1] = name end
  if #pairs_out > 0 then bulk('HSET', doc, pairs_out) end
  if #gone > 0 then bulk('HDEL', doc, gone) end
  if #zadd > 0 then bulk('ZADD', hist, zadd) end
  out[c] = table.concat(done)
end
return out
"""

# KEYS: card indexes. ARGV[i]: card i's blob "version new_owner previous_owner" (MOVE_CARD for each).
# Returns one string per card: "applied|owner|former owners".
MOVE_CARDS = _BLOB + """
local out = {}
for c = 1, #ARGV do
  local a = fields(ARGV[c])
  local cur = redis.call('GET', KEYS[c])
  local v, owner, formers = 0, '', ''
  if cur then
    local x, y, z = string.match(cur, '^(%d+)|([^|]*)|([^|]*)$')
    v, owner, formers = tonumber(x), y, z
  end
  local nv = tonumber(a[1])
  local applied = 1
  if nv < v then
    applied = 0
  elseif nv > v then
    local set, list = {}, {}
    local function add(id)
      if id ~= '' and id ~= a[2] and not set[id] then set[id] = true; list[#list + 1] = id end
    end
    for id in string.gmatch(formers, '%S+') do add(id) end
    add(owner)
    add(a[3])
    owner, formers = a[2], table.concat(list, ' ')
    redis.call('SET', KEYS[c], nv .. '|' .. owner .. '|' .. formers)
    applied = 2
  end
  out[c] = applied .. '|' .. owner .. '|' .. formers
end
return out
"""

# KEYS: doc hash, history zset. ARGV: page size, cursor used_ms ('' = first page), cursor digest.
# Returns ONE JSON text (one bulk string is far cheaper to receive than a nested reply), assembled from the
# stored values, which are JSON already:
#   {"s": segments|null, "i": insights|null, "c": [[card id, card], ...],
#    "r": [[digest, used_ms, row], ...], "m": {code: meta, ...}}
# with one more row than the page size when there is a next page.
READ_TAB = """
local function value(v) if v and v ~= '' then return v end return 'null' end
local parts = {}
while true do
  local chunk = redis.call('HGET', KEYS[1], 's' .. #parts)
  if not chunk then break end
  parts[#parts + 1] = chunk
end
local out = {'{"s":', value(table.concat(parts)), ',"i":', value(redis.call('HGET', KEYS[1], 'i')), ',"c":['}
local sep = ''
for id in string.gmatch(redis.call('HGET', KEYS[1], 'l') or '', '%S+') do
  local card = redis.call('HGET', KEYS[1], 'c' .. id)
  if card then
    out[#out + 1] = sep .. '[' .. cjson.encode(id) .. ',' .. card .. ']'
    sep = ','
  end
end
local limit = tonumber(ARGV[1])
local members
if ARGV[2] == '' then
  members = redis.call('ZREVRANGE', KEYS[2], 0, limit, 'WITHSCORES')
else
  local rank = redis.call('ZREVRANK', KEYS[2], ARGV[3])
  local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if rank and score and tonumber(score) == tonumber(ARGV[2]) then
    members = redis.call('ZREVRANGE', KEYS[2], rank + 1, rank + 1 + limit, 'WITHSCORES')
  else
    members = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
  end
end
out[#out + 1] = '],"r":['
sep = ''
local codes, metas = {}, {}
for i = 1, #members, 2 do
  local row = redis.call('HGET', KEYS[1], 'r' .. members[i])
  if row then
    out[#out + 1] = sep .. '[' .. cjson.encode(members[i]) .. ',' .. members[i + 1] .. ',' .. row .. ']'
    sep = ','
    local ok, decoded = pcall(cjson.decode, row)
    if ok and type(decoded[2]) == 'string' and not codes[decoded[2]] then
      codes[decoded[2]] = true
      metas[#metas + 1] = decoded[2]
    end
  end
end
out[#out + 1] = '],"m":{'
sep = ''
for _, code in ipairs(metas) do
  local meta = redis.call('HGET', KEYS[1], 'k' .. code)
  if meta then
    out[#out + 1] = sep .. cjson.encode(code) .. ':' .. meta
    sep = ','
  end
end
out[#out + 1] = '}}'
return table.concat(out)
"""

# KEYS: lock. ARGV: token, ttl ms. Renew only a lock we still hold.
RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lock. ARGV: token. Release only a lock we still hold.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

ALL = {
    "put_segments": PUT_SEGMENTS, "hset_if_newer": HSET_IF_NEWER, "put_redemption": PUT_REDEMPTION,
    "move_card": MOVE_CARD, "put_card": PUT_CARD, "drop_card": DROP_CARD, "read_tab": READ_TAB,
    "renew_lock": RENEW_LOCK, "release_lock": RELEASE_LOCK, "apply": APPLY, "move_cards": MOVE_CARDS,
}
SHA = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in ALL.items()}

AnyRedis = Redis | RedisCluster
"""A single Redis or a Redis Cluster: the code below works with both."""

Call = tuple[str, Sequence[str], Sequence[Any]]
"""(script name, keys, args)"""


async def load(redis: AnyRedis) -> None:
    for source in ALL.values():
        await redis.script_load(source)


async def run(redis: AnyRedis, calls: Sequence[Call], *, before: Callable[[Any], None] | None = None) -> list[Any]:
    """Run the scripts in one pipeline (one round trip); reload them once if Redis forgot them.

    ``before`` may add plain commands at the start of the pipeline; their results come first.
    """
    for attempt in (1, 2):
        pipe = redis.pipeline(transaction=False)
        if before is not None:
            before(pipe)
        for name, keys, args in calls:
            pipe.execute_command("EVALSHA", SHA[name], len(keys), *keys, *args)  # also on a cluster pipeline
        results = await pipe.execute(raise_on_error=False)
        missing = any(isinstance(r, NoScriptError) or (isinstance(r, ResponseError) and "NOSCRIPT" in str(r))
                      for r in results)
        if missing and attempt == 1:
            await load(redis)
            continue
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results
    raise AssertionError("unreachable")



# Fixed-arity encoders of the writes of APPLY (each returns its fields, framed) and of MOVE_CARDS' blobs.
# The replay frames millions of them: one join of precomputed pieces each.

_LEN = struct.Struct(">I").pack
_S, _I, _R, _P, _D = (_LEN(1) + code for code in (b"S", b"I", b"R", b"P", b"D"))
FIELDS = {"S": 3, "I": 3, "R": 8, "P": 4, "D": 3}
"""How many fields each write takes (with its code): a blob starts with the sum."""


def frame(count: int, ops: Sequence[bytes]) -> bytes:
    """A customer's blob: the number of fields, then the framed writes."""
    return _LEN(count) + b"".join(ops)


def segments_op(version: int, value: bytes) -> bytes:
    v = b"%d" % version
    return b"".join((_S, _LEN(len(v)), v, _LEN(len(value)), value))


def insights_op(version: int, value: bytes) -> bytes:
    v = b"%d" % version
    return b"".join((_I, _LEN(len(v)), v, _LEN(len(value)), value))


def redemption_op(digest: str, version: int, used_ms: int, compact: bytes, full: bytes, code: str,
                  meta: bytes) -> bytes:
    d, v, u, c = digest.encode(), b"%d" % version, b"%d" % used_ms, code.encode()
    return b"".join((_R, _LEN(len(d)), d, _LEN(len(v)), v, _LEN(len(u)), u, _LEN(len(compact)), compact,
                     _LEN(len(full)), full, _LEN(len(c)), c, _LEN(len(meta)), meta))


def put_card_op(card_id: str, version: int, value: bytes) -> bytes:
    i, v = card_id.encode(), b"%d" % version
    return b"".join((_P, _LEN(len(i)), i, _LEN(len(v)), v, _LEN(len(value)), value))


def drop_card_op(card_id: str, version: int) -> bytes:
    i, v = card_id.encode(), b"%d" % version
    return b"".join((_D, _LEN(len(i)), i, _LEN(len(v)), v))


def move_card_args(version: int, owner: str, previous: str) -> bytes:
    v, o, p = b"%d" % version, owner.encode(), previous.encode()
    return b"".join((_LEN(3), _LEN(len(v)), v, _LEN(len(o)), o, _LEN(len(p)), p))
