-- inbox_append_batch: append messages to the inboxes of their target sessions (the sessions of one
-- slot on a cluster: one session each with per-session tags; any number on a single node).
-- One script call per flush and slot instead of one per message, and per target session one HMGET,
-- one XLEN and one HSET per call, so a queued message costs one XADD (docs/performance.md).
-- KEYS: per distinct target session s (1-based): 3s-2 sess, 3s-1 inbox, 3s q2seen
-- ARGV: 1 inbox limit (entries; < 1 stores nothing), 2 qos0_drop_oldest ("1" or "0"), 3 now (ms),
--       then per message: blob, token ("" = none), number of targets n, then n quadruples:
--       session index s, qos ("1", or "1r" = with RETAIN), subscription ids ("1,7" or ""),
--       generation of the route ("" = any); n = -1: the same targets as the previous message, no quadruples
--       (a run of messages for the same subscribers costs three arguments per message)
-- Routes are verified on use: a target whose session is missing, or whose generation differs from the
-- route's (a later session of the same client id: the route is stale), is counted missing.
-- Exactly once for inbound QoS 2 (a token from q2_begin): the token is recorded in the target's q2seen
-- set with the entry; an inbox that already has it (a resend routed again) is skipped, counted in
-- `seen`. q2seen keeps the tokens of the last 24 h, at most 10,000 per session (trimmed at the end of
-- each call that added tokens: up to one call's messages more meanwhile).
-- Policy (BifroMQ's QoS0DropOldest, which concerns QoS 0 only): an inbox holding `limit` entries is
-- full. A queued QoS 1/2 entry is never trimmed: a new QoS 1/2 message for a full inbox is not queued
-- (reason 1). A new QoS 0 message for a full inbox is dropped (reason 2), unless drop-oldest is on and
-- the inbox holds a QoS 0 entry: the oldest QoS 0 entry is deleted and the new one queued (reason 3).
-- Returns: {workers, r_1, ..., r_m}: workers = the owner worker of each target session s (s-th element;
--          "" when offline or missing); then per message either the integer queued (every target got it:
--          no missing target, no drop, no token seen: the common case, its owners are the targets'
--          workers) or {missing, queued, {owner worker, ...}, {target index, reason, ...}, seen}:
--          targets without a (current) session, targets that got the message, the distinct online
--          owners of those inboxes (to notify), one (index, reason) pair per drop (index: the target's
--          position within its message, 1-based), and targets that had the token already.
-- Entry: id "<seq>-0" (seq: the session's sequence, field seq), fields q (qos), i (sub ids), m (blob).
--#include inbox_drop_oldest

local limit = tonumber(ARGV[1])
local drop_oldest = ARGV[2] == '1'
local now = tonumber(ARGV[3])
local state = {}

local function session(s)
  local st = state[s]
  if st == nil then
    local rec = redis.call('HMGET', KEYS[3 * s - 2], 'worker', 'seq', 'gen')
    if not rec[1] then
      st = {missing = true}
    else
      local seq = tonumber(rec[2]) or 0
      st = {worker = rec[1], seq = seq, seq0 = seq, gen = rec[3] or '', len = redis.call('XLEN', KEYS[3 * s - 1])}
    end
    state[s] = st
  end
  return st
end

local function seen_before(s, token)
  if redis.call('ZADD', KEYS[3 * s], 'NX', now, token) == 0 then
    return true
  end
  state[s].trim = true  -- trimmed once per call (below), not once per message
  return false
end

local out = {{}}
local a = 4
local targets = {}  -- the current message's targets: {s, qos, ids, gen} each
while a <= #ARGV do
  local blob = ARGV[a]
  local token = ARGV[a + 1]
  local n = tonumber(ARGV[a + 2])
  a = a + 3
  if n >= 0 then
    targets = {}
    for t = 1, n do
      targets[t] = {tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]}
      a = a + 4
    end
  end
  local missing, queued, seen = 0, 0, 0
  local owners, drops, notified = {}, {}, {}
  for t = 1, #targets do
    local tg = targets[t]
    local s, qos, ids, gen = tg[1], tg[2], tg[3], tg[4]
    local st = session(s)
    local store = true
    if st.missing or (gen ~= '' and gen ~= st.gen) then
      missing = missing + 1
      store = false
    elseif token ~= '' and seen_before(s, token) then
      seen = seen + 1
      store = false
    elseif limit < 1 or st.len >= limit then
      if string.sub(qos, 1, 1) ~= '0' then
        drops[#drops + 1] = t
        drops[#drops + 1] = 1
        store = false
      elseif limit >= 1 and drop_oldest and inbox_drop_oldest(KEYS[3 * s - 2], KEYS[3 * s - 1]) then
        drops[#drops + 1] = t
        drops[#drops + 1] = 3
        st.len = st.len - 1
      else
        drops[#drops + 1] = t
        drops[#drops + 1] = 2
        store = false
      end
      if not store and token ~= '' then
        redis.call('ZREM', KEYS[3 * s], token)  -- not queued: a resend may try again
      end
    end
    if store then
      st.seq = st.seq + 1
      redis.call('XADD', KEYS[3 * s - 1], string.format('%d-0', st.seq), 'q', qos, 'i', ids, 'm', blob)
      st.len = st.len + 1
      queued = queued + 1
      if st.worker ~= '' and not notified[st.worker] then
        notified[st.worker] = true
        owners[#owners + 1] = st.worker
      end
    end
  end
  if missing == 0 and seen == 0 and #drops == 0 then
    out[#out + 1] = queued
  else
    out[#out + 1] = {missing, queued, owners, drops, seen}
  end
end
local workers = out[1]
for s = 1, #KEYS / 3 do
  local st = state[s]
  workers[s] = (st and st.worker) or ''
end
for s, st in pairs(state) do
  if not st.missing and st.seq ~= st.seq0 then
    redis.call('HSET', KEYS[3 * s - 2], 'seq', string.format('%d', st.seq))
  end
  if st.trim then
    local key = KEYS[3 * s]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 86400000)
    if redis.call('ZCARD', key) > 10000 then
      redis.call('ZREMRANGEBYRANK', key, 0, -10001)
    end
  end
end
return out
