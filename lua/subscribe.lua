-- subscribe: add or replace subscriptions of one session (its slot); the caller then writes their
-- routes on the tenant's slot (tenant_apply) before it acknowledges (docs/redis-keys.md "Two slots").
-- KEYS: 1 sess, 2 subs
-- ARGV: 1 owner epoch or "" (any), 2 most filters the session may hold or "" (no limit),
--       then pairs: topic filter, encoded options
-- Returns: -1 when there is no session, -2 when `epoch` no longer owns it, -3 when the new filters
--          would exceed the limit (nothing written), else {worker, persistent, gen, existed (1/0) ...}
--          with one existed flag per pair; worker/persistent/gen make the route values.

local rec = redis.call('HMGET', KEYS[1], 'worker', 'persistent', 'epoch', 'gen')
if not rec[3] then
  return -1
end
if ARGV[1] ~= '' and tonumber(rec[3]) ~= tonumber(ARGV[1]) then
  return -2
end
if ARGV[2] ~= '' then
  local added = 0
  for i = 3, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
      added = added + 1
    end
  end
  if added > 0 and redis.call('HLEN', KEYS[2]) + added > tonumber(ARGV[2]) then
    return -3
  end
end
local out = {rec[1] or '', rec[2] or '0', rec[4] or ''}
for i = 3, #ARGV, 2 do
  out[#out + 1] = 1 - redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return out
