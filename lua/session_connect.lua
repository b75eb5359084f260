-- session_connect: open or resume a session and make the caller its owner (one atomic step).
-- KEYS: 1 sess, 2 subs, 3 inbox, 4 rel, 5 q2in, 6 routes, 7 rver, 8 sexp, 9 sessidx, 10 epoch counter,
--       11 wills (all tagged by the same tenant); a reconnect cancels a pending delayed will
-- ARGV: 1 client id, 2 clean_start ("1"/"0"), 3 user, 4 protocol version, 5 persistent ("1"/"0"),
--       6 session expiry (s), 7 worker id, 8 address, 9 client type, 10 now (ms),
--       11 will message blob ("" = no will), 12 will delay (s)
-- A live session of another user (sess.user ~= ARGV 3) is left untouched: returns {-1} [the session
-- belongs to (tenant, user, client); sessions of different users never resume, wipe or kick each other].
-- Returns: {present (1/0), epoch, prev_worker, prev_epoch, sent, {filter, opts, ...}, {rel pid, ...},
--           {q2in pid, ...}}; prev_worker is "" and prev_epoch 0 when the session was offline or absent.
-- An offline session whose sexp deadline (ARGV 10 = now) has passed counts as absent, swept or not.
-- Without a session, or with clean_start, the old session (subscriptions and their routes, inbox,
-- rel, q2in, record) is wiped first. Every kept route is rewritten with the new route value
-- (worker \0 persistent \0 opts; worker is "" for a persistent session, whose messages go through
-- its inbox) and rver is bumped only when a route value changed or was removed.
--#include session_wipe
--#include routes

local client = ARGV[1]
local persistent = ARGV[5]
local worker = ARGV[7]
local exists = redis.call('EXISTS', KEYS[1]) == 1
local prev_worker, prev_epoch = '', 0
if exists then
  local prev = redis.call('HMGET', KEYS[1], 'worker', 'epoch')
  if prev[1] and prev[1] ~= '' then
    prev_worker = prev[1]
    prev_epoch = tonumber(prev[2]) or 0
  end
end
if exists and prev_worker == '' then
  -- offline and its sexp deadline passed, but not swept yet: it has expired [MQTT-3.1.2-23]
  local at = redis.call('ZSCORE', KEYS[8], client)
  if at and tonumber(at) <= tonumber(ARGV[10]) then
    exists = false
  end
end
local owner = exists and redis.call('HGET', KEYS[1], 'user')
if owner and owner ~= ARGV[3] then
  -- the session of another user of the tenant: never resumed, wiped or taken over by this one
  return {-1}
end
local present = exists and ARGV[2] ~= '1'
local changed = false
if not present then
  changed = session_wipe(KEYS[6], client, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
end
-- epochs only grow, also across a failover to a replica that missed the last INCRs: never below the
-- connect time (ms), so a promoted replica cannot hand out an epoch a stale connection still holds
local epoch = math.max((tonumber(redis.call('GET', KEYS[10])) or 0) + 1, tonumber(ARGV[10]))
redis.call('SET', KEYS[10], string.format('%d', epoch))
redis.call('HSET', KEYS[1], 'user', ARGV[3], 'ver', ARGV[4], 'persistent', persistent,
  'expiry', ARGV[6], 'worker', worker, 'epoch', epoch, 'connected_at', ARGV[10],
  'disconnected_at', '0', 'address', ARGV[8], 'client_type', ARGV[9])
-- the will lives with the record so another worker can fire it if this one dies
if ARGV[11] ~= nil and ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'will', ARGV[11], 'will_delay', ARGV[12])
else
  redis.call('HDEL', KEYS[1], 'will', 'will_delay')
end
redis.call('HDEL', KEYS[1], 'will_at')
local subs, rel, q2in, sent = {}, {}, {}, 0
if present then
  subs = redis.call('HGETALL', KEYS[2])
  local prefix = route_prefix(worker, persistent)
  for i = 1, #subs, 2 do
    if route_put(KEYS[6], client, subs[i], prefix .. subs[i + 1]) then
      changed = true
    end
  end
  rel = redis.call('SMEMBERS', KEYS[4])
  q2in = redis.call('SMEMBERS', KEYS[5])
  sent = tonumber(redis.call('HGET', KEYS[1], 'sent')) or 0
else
  redis.call('HSET', KEYS[1], 'seq', '0', 'sent', '0')
end
if changed then
  redis.call('INCR', KEYS[7])
end
redis.call('ZREM', KEYS[8], client)
redis.call('ZADD', KEYS[9], 0, client)
redis.call('ZREM', KEYS[11], client)  -- back before the will delay ran out: no will [MQTT-3.1.3-9]
return {present and 1 or 0, epoch, prev_worker, prev_epoch, sent, subs, rel, q2in}
