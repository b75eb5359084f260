-- q2_begin: record inbound QoS 2 PUBLISHes in the publisher's session before they are routed.
-- KEYS: 1 sess, 2 q2in (the publisher's session)
-- ARGV: pairs packet id, token for a new message (unique: see tidemq/store/inbox.py), in arrival order
-- Returns: per pair duplicate, token (flat: {duplicate_1, token_1, duplicate_2, token_2, ...}): duplicate
--          0 = a new packet id (recorded with its token), 1 = seen before and its clean-session deliveries
--          were confirmed ("d<pid>" member: nothing to do), 2 = seen before without that mark (the caller
--          routes it again: the inbox appends carry the same token, so an inbox that already has it does
--          not get it twice; the clean-session deliveries are sent again). A publisher without a session
--          record: 0, "" per pair (nothing recorded, no token: at-least-once, as for a session that is gone).
-- The token lives in the record (field q2t:<pid>) until the PUBREL (q2del) ends the exchange.
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 1, #ARGV, 2 do
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
  return out
end
for i = 1, #ARGV, 2 do
  local pid, new = ARGV[i], ARGV[i + 1]
  local field = 'q2t:' .. pid
  if redis.call('SADD', KEYS[2], pid) == 1 then
    redis.call('HSET', KEYS[1], field, new)
    out[#out + 1] = 0
    out[#out + 1] = new
  else
    local token = redis.call('HGET', KEYS[1], field)
    if not token then  -- recorded by a version without tokens
      token = new
      redis.call('HSET', KEYS[1], field, token)
    end
    out[#out + 1] = redis.call('SISMEMBER', KEYS[2], 'd' .. pid) == 1 and 1 or 2
    out[#out + 1] = token
  end
end
return out
