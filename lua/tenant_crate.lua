-- tenant_crate: a tenant's CONNECTs in the current second of the Redis clock (TotalConnectPerSecond,
-- cluster-wide); a worker leases places of this second to admit without asking again.
-- KEYS: 1 crate (hash: s = the second, n = CONNECTs admitted or leased in it)
-- ARGV: 1 want (places asked for), 2 limit, 3 taken (CONNECTs the worker admitted already without a
--       place: counted whatever the limit)
-- Returns: {granted, n, ms_left}: granted = min(want, limit - n) (never below 0) after counting taken;
--          n the second's count with both; ms_left until the second ends (the grant's validity).
local t = redis.call('TIME')
local sec = t[1]
local left = 1000 - math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 's', 'n')
local n = 0
if cur[1] == sec then
  n = tonumber(cur[2]) or 0
end
n = n + tonumber(ARGV[3])
local granted = math.max(0, math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - n))
n = n + granted
redis.call('HSET', KEYS[1], 's', sec, 'n', n)
redis.call('PEXPIRE', KEYS[1], 2000)
return {granted, n, left}
