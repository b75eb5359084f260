-- route_watch_lease: start or extend a route watcher's lease on the Redis clock.
-- KEYS: 1 route watchers (hash: watcher id -> lease end, ms)
-- ARGV: 1 watcher id, 2 lease length (ms), 3 "1" to end the lease instead
-- Returns: the lease end (ms; 0 when ended). tidemq/store/route_watch.py explains the protocol.
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local t = redis.call('TIME')
local ends = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ends)
return ends
