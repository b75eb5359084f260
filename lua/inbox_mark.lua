-- inbox_mark: delivery-state changes of one session, in order, that must not recreate keys of a removed
-- session (one call per session and batch of the worker's InboxOps).
-- KEYS: 1 sess, 2 inbox, 3 rel, 4 q2in
-- ARGV: triples kind, seq, packet id, applied in order; kind is
--       "rec" (XDEL entry seq, SADD rel pid), "sent" (sess.sent = max(sent, seq)),
--       "q2add" (SADD q2in pid), "q2done" (SADD q2in "d<pid>": the clean-session deliveries of an inbound
--       QoS 2 message are out, see inbox_append_batch), "comp" (SREM rel pid: PUBCOMP),
--       "q2del" (SREM q2in pid and "d<pid>", HDEL sess "q2t:<pid>": the PUBREL of an inbound message)
-- Every kind is checked before anything is written (an unknown kind writes nothing).
-- Returns: 1 when applied, 0 when the session does not exist (nothing written).
local known = {rec = true, sent = true, q2add = true, q2done = true, comp = true, q2del = true}
for i = 1, #ARGV, 3 do
  if not known[ARGV[i]] then
    return redis.error_reply('inbox_mark: unknown kind ' .. ARGV[i])
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local sent = nil
for i = 1, #ARGV, 3 do
  local kind, seq, pid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 'rec' then
    redis.call('XDEL', KEYS[2], seq .. '-0')
    redis.call('SADD', KEYS[3], pid)
  elseif kind == 'sent' then
    if sent == nil then
      sent = tonumber(redis.call('HGET', KEYS[1], 'sent')) or 0
    end
    if tonumber(seq) > sent then
      sent = tonumber(seq)
      redis.call('HSET', KEYS[1], 'sent', seq)
    end
  elseif kind == 'q2add' then
    redis.call('SADD', KEYS[4], pid)
  elseif kind == 'q2done' then
    redis.call('SADD', KEYS[4], 'd' .. pid)
  elseif kind == 'comp' then
    redis.call('SREM', KEYS[3], pid)
  else  -- q2del
    redis.call('SREM', KEYS[4], pid, 'd' .. pid)
    redis.call('HDEL', KEYS[1], 'q2t:' .. pid)
  end
end
return 1
