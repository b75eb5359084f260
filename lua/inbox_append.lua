-- inbox_append: append one message to the inboxes of several sessions of one tenant.
-- KEYS: per target t (1-based): 2t-1 sess, 2t inbox
-- ARGV: 1 message blob (passed once for all targets), 2 inbox limit (entries; < 1 stores nothing),
--       3 drop_oldest ("1": a full inbox drops its oldest entry, "0": the new message is dropped),
--       then per target: 2+2t qos, 3+2t subscription ids ("1,7" or "")
-- Returns: {missing, dropped, owner worker, ...}: targets without a session, messages dropped by the
--          limit, and the distinct online owners of the inboxes that got the message (to notify).
-- Entry: id "<seq>-0" with seq = HINCRBY sess seq 1, fields q (qos), i (sub ids), m (blob).
local limit = tonumber(ARGV[2])
local drop_oldest = ARGV[3] == '1'
local missing, dropped = 0, 0
local result = {0, 0}
local seen = {}
for t = 1, #KEYS / 2 do
  local sess = KEYS[2 * t - 1]
  local inbox = KEYS[2 * t]
  local worker = redis.call('HGET', KEYS[2 * t - 1], 'worker')
  if not worker then
    missing = missing + 1
  elseif limit < 1 or (not drop_oldest and redis.call('XLEN', inbox) >= limit) then
    dropped = dropped + 1
  else
    local seq = redis.call('HINCRBY', sess, 'seq', 1)
    redis.call('XADD', inbox, seq .. '-0', 'q', ARGV[2 + 2 * t], 'i', ARGV[3 + 2 * t], 'm', ARGV[1])
    if drop_oldest then
      dropped = dropped + redis.call('XTRIM', inbox, 'MAXLEN', limit)
    end
    if worker ~= '' and not seen[worker] then
      seen[worker] = true
      result[#result + 1] = worker
    end
  end
end
result[1] = missing
result[2] = dropped
return result
