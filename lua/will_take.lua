-- will_take: claim a delayed will that is due, exactly once across all workers.
-- KEYS: 1 sess
-- ARGV: 1 now (ms)
-- Returns: {blob, will_at}: the will message blob and the fire-at it was kept for, or {"", will_at or 0}
--          when none is due (not yet due: will_at > now; already taken, the session reconnected or is
--          gone: 0). The will leaves the record in the same step, so one caller fires it; the caller
--          then removes the tenant's will hint (tenant_apply "w", only for the fire-at it saw).
local rec = redis.call('HMGET', KEYS[1], 'will', 'worker', 'will_at')
if not rec[1] or not rec[3] or (rec[2] and rec[2] ~= '') then
  return {'', '0'}
end
if tonumber(rec[3]) > tonumber(ARGV[1]) then
  return {'', rec[3]}
end
redis.call('HDEL', KEYS[1], 'will', 'will_delay', 'will_at')
return {rec[1], rec[3]}
