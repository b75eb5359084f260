-- session_expire: remove a chunk of candidate sessions that (still) qualify, re-checked atomically.
-- KEYS: 1 routes, 2 rver, 3 sexp, 4 sessidx, then 5 keys per candidate: sess, subs, inbox, rel, q2in
-- ARGV: 1 mode: "expired" (offline and sexp score <= now), "idle" (offline and disconnected_at <=
--       threshold) or "all" (every session, online ones too), 2 now (ms), 3 threshold (ms),
--       then one client id per candidate (in KEYS order)
-- Returns: {client, worker, epoch, client, worker, epoch, ...} for every removed session; worker is
--          "" when it was offline, else the owner to signal (with the epoch of the connection to close). Index entries of missing records are dropped;
--          an online session found in sexp leaves sexp (so the "expired" sweep always advances).
--#include session_wipe

local mode = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local out = {}
local changed = false
for i = 4, #ARGV do
  local client = ARGV[i]
  local base = 4 + (i - 4) * 5
  local rec = redis.call('HMGET', KEYS[base + 1], 'worker', 'disconnected_at', 'epoch')
  local remove = false
  if not rec[3] then
    redis.call('ZREM', KEYS[3], client)
    redis.call('ZREM', KEYS[4], client)
  elseif mode == 'all' then
    remove = true
  elseif rec[1] == '' then
    if mode == 'expired' then
      local at = redis.call('ZSCORE', KEYS[3], client)
      remove = at and tonumber(at) <= now
    elseif mode == 'idle' then
      remove = (tonumber(rec[2]) or 0) <= threshold
    end
  elseif mode == 'expired' then
    redis.call('ZREM', KEYS[3], client)
  end
  if remove then
    if session_wipe(KEYS[1], client, KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4],
                    KEYS[base + 5]) then
      changed = true
    end
    redis.call('ZREM', KEYS[3], client)
    redis.call('ZREM', KEYS[4], client)
    out[#out + 1] = client
    out[#out + 1] = rec[1] or ''
    out[#out + 1] = rec[3] or '0'
  end
end
if changed then
  redis.call('INCR', KEYS[2])
end
return out
