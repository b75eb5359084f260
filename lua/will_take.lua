-- will_take: claim a delayed will that is due, exactly once across all workers.
-- KEYS: 1 sess, 2 wills (the tenant's zset of pending delayed wills)
-- ARGV: 1 client id, 2 now (ms)
-- Returns: the will message blob, or false when none is due (not yet due, already taken, the session
--          reconnected — session_connect removed the entry — or the session is gone).
-- The entry leaves the zset and the will leaves the record in the same step, so one caller fires it.
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) > tonumber(ARGV[2]) then
  return false
end
redis.call('ZREM', KEYS[2], ARGV[1])
local rec = redis.call('HMGET', KEYS[1], 'will', 'worker')
if not rec[1] or (rec[2] and rec[2] ~= '') then
  return false
end
redis.call('HDEL', KEYS[1], 'will', 'will_delay', 'will_at')
return rec[1]
