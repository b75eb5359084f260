-- inbox_mark: a delivery-state change that must not recreate keys of a removed session.
-- KEYS: 1 sess, 2 inbox, 3 rel, 4 q2in
-- ARGV: 1 kind: "rec" (XDEL entry seq, SADD rel pid), "sent" (sess.sent = max(sent, seq)),
--       "q2add" (SADD q2in pid), "q2done" (SADD q2in "d<pid>": the clean-session deliveries of an inbound
--       QoS 2 message are out, see inbox_append); 2 seq; 3 packet id
-- Returns: 1 when applied, 0 when the session does not exist (nothing written).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local kind = ARGV[1]
if kind == 'rec' then
  redis.call('XDEL', KEYS[2], ARGV[2] .. '-0')
  redis.call('SADD', KEYS[3], ARGV[3])
elseif kind == 'sent' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'sent')) or 0
  if tonumber(ARGV[2]) > cur then
    redis.call('HSET', KEYS[1], 'sent', ARGV[2])
  end
elseif kind == 'q2add' then
  redis.call('SADD', KEYS[4], ARGV[3])
elseif kind == 'q2done' then
  redis.call('SADD', KEYS[4], 'd' .. ARGV[3])
else
  return redis.error_reply('inbox_mark: unknown kind ' .. kind)
end
return 1
