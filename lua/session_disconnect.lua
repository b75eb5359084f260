-- session_disconnect: the owner connection `epoch` ended; keep the session offline or remove it.
-- KEYS: 1 sess, 2 subs, 3 inbox, 4 rel, 5 q2in, 6 routes, 7 rver, 8 sexp, 9 sessidx, 10 wills
-- ARGV: 1 client id, 2 epoch of the ending connection, 3 now (ms), 4 session expiry (s) or "" for the
--       stored one (MQTT 5 DISCONNECT may change it), 5 fire-at (ms) of a delayed will to keep with
--       the offline record ("" = the ending connection handled its will: drop it)
-- Returns: "stale" (no session, or another connection owns it: nothing touched), "offline"
--          (persistent with expiry > 0: worker "", sexp entry at now + expiry; its routes already
--          name no worker, so they are untouched) or "removed" (record, subs, routes, inbox, rel,
--          q2in and index entries deleted).
-- rver is bumped when routes were removed.
--#include session_wipe

local client = ARGV[1]
local rec = redis.call('HMGET', KEYS[1], 'epoch', 'persistent', 'expiry')
if not rec[1] or tonumber(rec[1]) ~= tonumber(ARGV[2]) then
  return 'stale'
end
local now = tonumber(ARGV[3])
local expiry = tonumber(rec[3]) or 0
if ARGV[4] ~= '' then
  expiry = tonumber(ARGV[4])
end
if rec[2] == '1' and expiry > 0 then
  redis.call('HSET', KEYS[1], 'worker', '', 'disconnected_at', ARGV[3])
  if ARGV[5] ~= nil and ARGV[5] ~= '' and redis.call('HEXISTS', KEYS[1], 'will') == 1 then
    -- a delayed will waits in the record; any worker fires it when due (will_take)
    redis.call('HSET', KEYS[1], 'will_at', ARGV[5])
    redis.call('ZADD', KEYS[10], tonumber(ARGV[5]), client)
  else
    redis.call('HDEL', KEYS[1], 'will', 'will_delay', 'will_at')  -- the connection handled its will
  end
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'expiry', ARGV[4])
  end
  redis.call('ZADD', KEYS[8], now + expiry * 1000, client)
  return 'offline'
end
local changed = session_wipe(KEYS[6], client, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[8], client)
redis.call('ZREM', KEYS[9], client)
redis.call('ZREM', KEYS[10], client)
if changed then
  redis.call('INCR', KEYS[7])
end
return 'removed'
