-- inbox_append_batch: append several messages of one tenant to the inboxes of their target sessions.
-- The batched form of inbox_append (same policy, same per-message result) for messages without a
-- publisher QoS 2 packet id: one script call per flush and tenant instead of one per message, and per
-- target session one HMGET, one XLEN and one HSET per call instead of three commands per message, so a
-- queued message costs one XADD (docs/performance.md, "Redis commands per message").
-- KEYS: per distinct target session s (1-based): 2s-1 sess, 2s inbox
-- ARGV: 1 inbox limit (entries; < 1 stores nothing), 2 qos0_drop_oldest ("1" or "0"), then per message:
--       blob, number of targets n, then n triples: session index s, qos ("1", or "1r" = with RETAIN),
--       subscription ids ("1,7" or "")
-- Returns: one {missing, queued, {owner worker, ...}, {target index, reason, ...}} per message, as
--          inbox_append (target index: the target's position within its message, 1-based).
-- Per session state is read once and kept here while the script runs: worker (nil = no session), the
-- last seq (written back once at the end), the inbox length (kept up to date as entries are added or
-- the oldest QoS 0 entry deleted).
--#include inbox_drop_oldest

local limit = tonumber(ARGV[1])
local drop_oldest = ARGV[2] == '1'
local state = {}

local function session(s)
  local st = state[s]
  if st == nil then
    local rec = redis.call('HMGET', KEYS[2 * s - 1], 'worker', 'seq')
    if not rec[1] then
      st = {missing = true}
    else
      local seq = tonumber(rec[2]) or 0
      st = {worker = rec[1], seq = seq, seq0 = seq, len = redis.call('XLEN', KEYS[2 * s])}
    end
    state[s] = st
  end
  return st
end

local out = {}
local a = 3
while a <= #ARGV do
  local blob = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local missing, queued = 0, 0
  local owners, drops, seen = {}, {}, {}
  for t = 1, n do
    local s = tonumber(ARGV[a])
    local qos = ARGV[a + 1]
    local ids = ARGV[a + 2]
    a = a + 3
    local st = session(s)
    local store = true
    if st.missing then
      missing = missing + 1
      store = false
    elseif limit < 1 or st.len >= limit then
      if string.sub(qos, 1, 1) ~= '0' then
        drops[#drops + 1] = t
        drops[#drops + 1] = 1
        store = false
      elseif limit >= 1 and drop_oldest and inbox_drop_oldest(KEYS[2 * s - 1], KEYS[2 * s]) then
        drops[#drops + 1] = t
        drops[#drops + 1] = 3
        st.len = st.len - 1
      else
        drops[#drops + 1] = t
        drops[#drops + 1] = 2
        store = false
      end
    end
    if store then
      st.seq = st.seq + 1
      redis.call('XADD', KEYS[2 * s], st.seq .. '-0', 'q', qos, 'i', ids, 'm', blob)
      st.len = st.len + 1
      queued = queued + 1
      if st.worker ~= '' and not seen[st.worker] then
        seen[st.worker] = true
        owners[#owners + 1] = st.worker
      end
    end
  end
  out[#out + 1] = {missing, queued, owners, drops}
end
for s, st in pairs(state) do
  if not st.missing and st.seq ~= st.seq0 then
    redis.call('HSET', KEYS[2 * s - 1], 'seq', st.seq)
  end
end
return out
