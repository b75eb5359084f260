-- unsubscribe: remove subscriptions of one session and their routes.
-- KEYS: 1 sess, 2 subs, 3 routes, 4 rver
-- ARGV: 1 client id, 2 owner epoch or "" (any), then topic filters
-- Returns: -1 when there is no session, -2 when `epoch` no longer owns it, else {existed (1/0), ...}
--          one per filter; rver is bumped when a route was removed.
local rec = redis.call('HMGET', KEYS[1], 'epoch')
if not rec[1] then
  return -1
end
if ARGV[2] ~= '' and tonumber(rec[1]) ~= tonumber(ARGV[2]) then
  return -2
end
local client = ARGV[1]
local out = {}
local changed = false
for i = 3, #ARGV do
  out[#out + 1] = redis.call('HDEL', KEYS[2], ARGV[i])
  if redis.call('HDEL', KEYS[3], client .. '\0' .. ARGV[i]) == 1 then
    changed = true
  end
end
if changed then
  redis.call('INCR', KEYS[4])
end
return out
