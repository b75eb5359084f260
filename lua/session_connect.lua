-- session_connect: open or resume a session and make the caller its owner (one atomic step on the
-- session's slot; the tenant's indexes follow with tenant_apply, docs/redis-keys.md "Two slots").
-- KEYS: 1 sess, 2 subs, 3 inbox, 4 rel, 5 q2in, 6 q2seen (one session's tag)
-- ARGV: 1 client id, 2 clean_start ("1"/"0"), 3 user, 4 protocol version, 5 persistent ("1"/"0"),
--       6 session expiry (s), 7 worker id, 8 address, 9 client type, 10 now (ms),
--       11 will message blob ("" = no will), 12 will delay (s)
-- A live session of another user (sess.user ~= ARGV 3) is left untouched: returns {-1} [the session
-- belongs to (tenant, user, client); sessions of different users never resume, wipe or kick each other].
-- Returns: {present (1/0), epoch, prev_worker, prev_epoch, sent, {filter, opts, ...}, {rel pid, ...},
--           {q2in member, ...}, gen, old gen, {old filter, ...}}; prev_worker is "" and prev_epoch 0
--           when the session was offline or absent; old gen / old filters name a session this call
--           wiped ("" / {} when none), whose routes the caller drops.
-- An offline session whose expire_at (ARGV 10 = now) has passed counts as absent, swept or not.
-- Without a session, or with clean_start, the old session is wiped and a new one created; its generation
-- (field gen, written into its routes) is its first epoch, so generations grow per client id. A reconnect clears a pending delayed will [MQTT-3.1.3-9] (the tenant's will hint stays until
-- the sweeper finds nothing to fire). Epochs: max(previous + 1, the server clock in us), never reused
-- by the session, also across a failover to a replica that missed the last write.
--#include session_wipe
--#include clock

local persistent = ARGV[5]
local worker = ARGV[7]
local rec = redis.call('HMGET', KEYS[1], 'worker', 'epoch', 'user', 'expire_at')
local exists = rec[2] ~= false
local prev_worker, prev_epoch = '', 0
if exists and rec[1] and rec[1] ~= '' then
  prev_worker = rec[1]
  prev_epoch = tonumber(rec[2]) or 0
end
if exists and prev_worker == '' and rec[4] and tonumber(rec[4]) <= tonumber(ARGV[10]) then
  exists = false  -- offline and its expiry passed, but not swept yet: it has expired [MQTT-3.1.2-23]
end
if exists and rec[3] and rec[3] ~= ARGV[3] then
  return {-1}  -- the session of another user of the tenant: never resumed, wiped or taken over
end
local present = exists and ARGV[2] ~= '1'
local old_gen, old_filters = '', {}
local epoch = math.max((tonumber(rec[2]) or 0) + 1, clock_us())
if not present then
  if rec[2] then
    old_gen, old_filters = session_wipe(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  end
  redis.call('HSET', KEYS[1], 'seq', '0', 'sent', '0', 'gen', string.format('%d', epoch))
end
redis.call('HSET', KEYS[1], 'user', ARGV[3], 'ver', ARGV[4], 'persistent', persistent,
  'expiry', ARGV[6], 'worker', worker, 'epoch', string.format('%d', epoch), 'connected_at', ARGV[10],
  'disconnected_at', '0', 'address', ARGV[8], 'client_type', ARGV[9])
-- the will lives with the record so another worker can fire it if this one dies
if ARGV[11] ~= nil and ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'will', ARGV[11], 'will_delay', ARGV[12])
else
  redis.call('HDEL', KEYS[1], 'will', 'will_delay')
end
redis.call('HDEL', KEYS[1], 'will_at', 'expire_at')
local subs, rel, q2in, sent = {}, {}, {}, 0
if present then
  subs = redis.call('HGETALL', KEYS[2])
  rel = redis.call('SMEMBERS', KEYS[4])
  q2in = redis.call('SMEMBERS', KEYS[5])
  sent = tonumber(redis.call('HGET', KEYS[1], 'sent')) or 0
end
local gen = redis.call('HGET', KEYS[1], 'gen') or ''
return {present and 1 or 0, string.format('%d', epoch), prev_worker, prev_epoch, sent, subs, rel, q2in, gen,
        old_gen, old_filters}
