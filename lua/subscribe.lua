-- subscribe: add or replace subscriptions of one session and their routes.
-- KEYS: 1 sess, 2 subs, 3 routes, 4 rver
-- ARGV: 1 client id, 2 owner epoch or "" (any), 3 most filters the session may hold or "" (no limit),
--       then pairs: topic filter, encoded options
-- Returns: -1 when there is no session, -2 when `epoch` no longer owns it, -3 when the new filters
--          would exceed the limit (nothing written), else {existed (1/0), ...}
--          one per pair. The route value is worker \0 persistent \0 opts from the session record
--          (worker "" for a persistent session);
--          rver is bumped when any route value changed.
--#include routes

local rec = redis.call('HMGET', KEYS[1], 'worker', 'persistent', 'epoch')
if not rec[3] then
  return -1
end
if ARGV[2] ~= '' and tonumber(rec[3]) ~= tonumber(ARGV[2]) then
  return -2
end
if ARGV[3] ~= '' then
  local added = 0
  for i = 4, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
      added = added + 1
    end
  end
  if added > 0 and redis.call('HLEN', KEYS[2]) + added > tonumber(ARGV[3]) then
    return -3
  end
end
local client = ARGV[1]
local prefix = route_prefix(rec[1] or '', rec[2] or '0')
local out = {}
local changed = false
for i = 4, #ARGV, 2 do
  local filter = ARGV[i]
  local opts = ARGV[i + 1]
  out[#out + 1] = 1 - redis.call('HSET', KEYS[2], filter, opts)
  if route_put(KEYS[3], client, filter, prefix .. opts) then
    changed = true
  end
end
if changed then
  redis.call('INCR', KEYS[4])
end
return out
