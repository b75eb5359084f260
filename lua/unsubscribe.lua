-- unsubscribe: remove subscriptions of one session (its slot), after the caller dropped their routes on
-- the tenant's slot (tenant_apply, only route values of this generation).
-- KEYS: 1 sess, 2 subs
-- ARGV: 1 owner epoch or "" (any), then topic filters
-- Returns: -1 when there is no session, -2 when `epoch` no longer owns it, else {gen, existed (1/0), ...}
--          with one flag per filter.
local rec = redis.call('HMGET', KEYS[1], 'epoch', 'gen')
if not rec[1] then
  return -1
end
if ARGV[1] ~= '' and tonumber(rec[1]) ~= tonumber(ARGV[1]) then
  return -2
end
local out = {rec[2] or ''}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('HDEL', KEYS[2], ARGV[i])
end
return out
