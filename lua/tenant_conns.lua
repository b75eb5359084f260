-- tenant_conns: one worker's share of a tenant's connections (TotalConnections, cluster-wide), written and
-- summed in one script on the tenant's slot; optionally leases more places for the worker to admit
-- without asking again. Only the worker itself writes its field; a field not renewed within its TTL (the
-- worker died or lost Redis) no longer counts and is removed here.
-- KEYS: 1 conns (hash: worker id -> "<held>:<valid until ms>")
-- ARGV: 1 worker id, 2 held (connections open on the worker + places leased and unused), 3 want (places
--       asked for, 0: none), 4 limit, 5 ttl ms
-- Returns: {granted, others, workers}: granted = min(want, limit - others - held) (never below 0), now part
--          of the worker's field; others = what the other live workers hold; workers = live fields + 1.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local held = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local others = 0
local workers = 1
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= me then
    local n, untl = string.match(all[i + 1], '^(%d+):(%d+)$')
    if n and tonumber(untl) > now then
      others = others + tonumber(n)
      workers = workers + 1
    else
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
local granted = 0
if want > 0 then
  granted = math.max(0, math.min(want, limit - others - held))
end
held = held + granted
if held > 0 then
  redis.call('HSET', KEYS[1], me, string.format('%d:%d', held, now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('HDEL', KEYS[1], me)
end
return {granted, others, workers}
