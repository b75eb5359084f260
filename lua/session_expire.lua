-- session_expire: remove one session if it (still) qualifies, re-checked atomically on its slot.
-- KEYS: 1 sess, 2 subs, 3 inbox, 4 rel, 5 q2in, 6 q2seen (one session's tag)
-- ARGV: 1 mode: "expired" (offline and expire_at <= now), "idle" (offline and disconnected_at <=
--       threshold) or "all" (every session, online ones too), 2 now (ms), 3 threshold (ms)
-- Returns: {"missing"} (no record), {"online", epoch} (kept: it has an owner), {"kept", expire_at or 0}
--          (offline but not due), or {"removed", worker, epoch, gen, will_at or 0, filter, ...}: worker
--          is "" when it was offline, else the owner to signal (with the epoch of the connection to
--          close); the caller drops the routes of that generation and the tenant's index entries.
--#include session_wipe

local mode = ARGV[1]
local rec = redis.call('HMGET', KEYS[1], 'worker', 'disconnected_at', 'epoch', 'expire_at', 'will_at')
if not rec[3] then
  return {'missing'}
end
local remove = false
if mode == 'all' then
  remove = true
elseif rec[1] == '' then
  if mode == 'expired' then
    remove = rec[4] ~= false and tonumber(rec[4]) <= tonumber(ARGV[2])
  elseif mode == 'idle' then
    remove = (tonumber(rec[2]) or 0) <= tonumber(ARGV[3])
  end
end
if not remove then
  if rec[1] ~= '' then
    return {'online', rec[3]}
  end
  return {'kept', rec[4] or '0'}
end
local gen, filters = session_wipe(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local out = {'removed', rec[1] or '', rec[3], gen, rec[5] or '0'}
for i = 1, #filters do
  out[#out + 1] = filters[i]
end
return out
