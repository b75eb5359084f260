-- retain_index (include): the index of a tenant's retained topic names, kept beside the retain hash.
-- The index is a sorted set, every score 0, one member per retained topic: `topic \0 expire-at`, the
-- expire-at in wall clock ms as decimal digits ("0": never expires). Topic names never hold U+0000,
-- so a topic's member is found by the lex range [`topic \0`, `topic \0 \255`] and a filter's literal
-- prefix narrows a match to one lex range, all without reading a payload (tidemq/store/retained.py).
-- Invariant: the index exists whenever the hash does and lists exactly its topics. Data written before
-- the index existed has a hash and no index: `retain_index_ensure` rebuilds it (HSCAN in chunks,
-- in the script run that first touches the tenant's retained messages). Every key comes from the
-- including script's KEYS.

-- expire-at of a message blob (`M1` | u32 header length | JSON header | payload), from the header's
-- top-level "e" field; "0" when absent or unreadable. Only the header is looked at: a JSON string
-- cannot hold `,"e":` or `{"e":` (its quotes are escaped) and no nested header object has an "e" key.
local function retain_expire_at(blob)
  if #blob < 6 or string.sub(blob, 1, 2) ~= 'M1' then
    return '0'
  end
  local b1, b2, b3, b4 = string.byte(blob, 3, 6)
  local n = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  local e = string.match(string.sub(blob, 7, 6 + n), '[{,]"e":(%d+)')
  return e or '0'
end

-- remove the member of `topic` (there is at most one)
local function retain_index_unset(idx, topic)
  local old = redis.call('ZRANGEBYLEX', idx, '[' .. topic .. '\0', '[' .. topic .. '\0\255')
  for i = 1, #old do
    redis.call('ZREM', idx, old[i])
  end
end

-- (re)place the member of `topic` for the message `blob`
local function retain_index_set(idx, topic, blob)
  retain_index_unset(idx, topic)
  redis.call('ZADD', idx, 0, topic .. '\0' .. retain_expire_at(blob))
end

-- rebuild the index of a hash written without one; returns how many topics were indexed (0: nothing
-- to do: the index exists, or there is no retained message at all)
local function retain_index_ensure(hash, idx)
  if redis.call('EXISTS', idx) == 1 or redis.call('EXISTS', hash) == 0 then
    return 0
  end
  local n = 0
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', hash, cursor, 'COUNT', 500)
    cursor = page[1]
    local kv = page[2]
    for i = 1, #kv, 2 do
      redis.call('ZADD', idx, 0, kv[i] .. '\0' .. retain_expire_at(kv[i + 1]))
      n = n + 1
    end
  until cursor == '0'
  return n
end
