-- q2_begin: record an inbound QoS 2 PUBLISH in the publisher's session before it is routed.
-- KEYS: 1 sess, 2 q2in (the publisher's session)
-- ARGV: 1 packet id, 2 token for a new message (unique: see tidemq/store/inbox.py)
-- Returns: {duplicate, token}: duplicate 0 = a new packet id (recorded with ARGV 2 as its token),
--          1 = seen before and its clean-session deliveries were confirmed ("d<pid>" member: nothing to
--          do), 2 = seen before without that mark (the caller routes it again: the inbox appends carry
--          the same token, so an inbox that already has it does not get it twice; the clean-session
--          deliveries are sent again). A publisher without a session record: {0, ""} (nothing recorded,
--          no token: at-least-once, as for a session that is gone).
-- The token lives in the record (field q2t:<pid>) until the PUBREL (q2del) ends the exchange.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, ''}
end
local field = 'q2t:' .. ARGV[1]
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], field, ARGV[2])
  return {0, ARGV[2]}
end
local token = redis.call('HGET', KEYS[1], field)
if not token then  -- recorded by a version without tokens
  token = ARGV[2]
  redis.call('HSET', KEYS[1], field, token)
end
if redis.call('SISMEMBER', KEYS[2], 'd' .. ARGV[1]) == 1 then
  return {1, token}
end
return {2, token}
