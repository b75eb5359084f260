-- session_disconnect: the owner connection `epoch` ended; keep the session offline or remove it.
-- KEYS: 1 sess, 2 subs, 3 inbox, 4 rel, 5 q2in, 6 q2seen (one session's tag)
-- ARGV: 1 epoch of the ending connection, 2 now (ms), 3 session expiry (s) or "" for the stored one
--       (MQTT 5 DISCONNECT may change it), 4 fire-at (ms) of a delayed will to keep with the offline
--       record ("" = the ending connection handled its will: drop it)
-- Returns: {"stale"} (no session, or another connection owns it: nothing touched),
--          {"offline", expire_at, will_at or 0} (persistent with expiry > 0: worker "", expire_at and
--          will_at kept in the record; the caller adds the tenant's expiry and will hints), or
--          {"removed", gen, filter, ...} (every key of the session deleted; the caller drops the routes
--          of that generation and the index entry).
--#include session_wipe

local rec = redis.call('HMGET', KEYS[1], 'epoch', 'persistent', 'expiry')
if not rec[1] or tonumber(rec[1]) ~= tonumber(ARGV[1]) then
  return {'stale'}
end
local now = tonumber(ARGV[2])
local expiry = tonumber(rec[3]) or 0
if ARGV[3] ~= '' then
  expiry = tonumber(ARGV[3])
end
if rec[2] == '1' and expiry > 0 then
  local expire_at = now + expiry * 1000
  redis.call('HSET', KEYS[1], 'worker', '', 'disconnected_at', ARGV[2], 'expire_at', string.format('%d', expire_at))
  local will_at = 0
  if ARGV[4] ~= nil and ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[1], 'will') == 1 then
    -- a delayed will waits in the record; any worker fires it when due (will_take)
    will_at = tonumber(ARGV[4])
    redis.call('HSET', KEYS[1], 'will_at', ARGV[4])
  else
    redis.call('HDEL', KEYS[1], 'will', 'will_delay', 'will_at')  -- the connection handled its will
  end
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], 'expiry', ARGV[3])
  end
  return {'offline', string.format('%d', expire_at), string.format('%d', will_at)}
end
local gen, filters = session_wipe(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local out = {'removed', gen}
for i = 1, #filters do
  out[#out + 1] = filters[i]
end
return out
