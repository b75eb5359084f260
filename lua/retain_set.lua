-- retain_set: set, replace or clear the retained message of one topic, within the tenant's limit,
-- and keep the topic-name index in step (lua/include/retain_index.lua; rebuilt first if missing).
-- KEYS: 1 retain, 2 retain index
-- ARGV: 1 topic, 2 message blob ("" clears), 3 limit (max retained topics of the tenant)
-- Returns: "CLEARED" (empty blob; whether or not one existed), "RETAINED" (stored or replaced), or
--          "EXCEED_LIMIT" (a new topic while the tenant already holds `limit` topics; nothing written).
--#include retain_index
retain_index_ensure(KEYS[1], KEYS[2])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  retain_index_unset(KEYS[2], ARGV[1])
  return 'CLEARED'
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 'EXCEED_LIMIT'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
retain_index_set(KEYS[2], ARGV[1], ARGV[2])
return 'RETAINED'
