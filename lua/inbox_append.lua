-- inbox_append: append one message to the inboxes of several sessions of one tenant.
-- KEYS: per target t (1-based): 2t-1 sess, 2t inbox; then, when ARGV 4 is set, the publisher's sess and q2in
-- ARGV: 1 message blob (passed once for all targets), 2 inbox limit (entries; < 1 stores nothing),
--       3 qos0_drop_oldest ("1" or "0"), 4 the publisher's QoS 2 packet id ("" = none),
--       then per target: 3+2t qos ("1", or "1r" = deliver with RETAIN), 4+2t subscription ids ("1,7" or "")
-- QoS 2 exactly once: with ARGV 4, the packet id is recorded in the publisher's q2in set in the same step as
-- the appends; when it is already there the message was routed before (a resend after a lost reply or a
-- crash) and nothing is appended. A publisher session that no longer exists records nothing. Once the
-- message went everywhere (clean sessions too), the worker adds "d<pid>" (inbox_mark "q2done") before its
-- PUBREC: a resend without it sends the clean-session deliveries again (they may have been lost).
-- Policy (BifroMQ's QoS0DropOldest, which concerns QoS 0 only): an inbox holding `limit` entries is
-- full. A queued QoS 1/2 entry is never trimmed: a new QoS 1/2 message for a full inbox is not queued
-- (reason 1). A new QoS 0 message for a full inbox is dropped (reason 2), unless drop-oldest is on and
-- the inbox holds a QoS 0 entry: the oldest QoS 0 entry is deleted and the new one queued (reason 3).
-- Finding the oldest QoS 0 entry: include inbox_drop_oldest. Messages without a packet id are appended
-- in batches by inbox_append_batch (same policy); this script serves the QoS 2 exactly-once path.
-- Returns: {missing, queued, {owner worker, ...}, {target index, reason, target index, reason, ...}, duplicate}:
--          targets without a session, targets that got the message, the distinct online owners of the
--          inboxes that got it (to notify), one (index, reason) pair per drop, and, when ARGV 4 names a
--          packet id that was already recorded (nothing appended): 1 if "d<pid>" is there too, else 2.
-- Entry: id "<seq>-0" with seq = HINCRBY sess seq 1, fields q (qos), i (sub ids), m (blob).
--#include inbox_drop_oldest

local targets = #KEYS / 2
if ARGV[4] ~= '' then
  targets = (#KEYS - 2) / 2
  if redis.call('EXISTS', KEYS[#KEYS - 1]) == 1 and redis.call('SADD', KEYS[#KEYS], ARGV[4]) == 0 then
    -- routed before: 1 when its clean-session deliveries were confirmed too ("d<pid>" member), else 2
    if redis.call('SISMEMBER', KEYS[#KEYS], 'd' .. ARGV[4]) == 1 then
      return {0, 0, {}, {}, 1}
    end
    return {0, 0, {}, {}, 2}
  end
end
local limit = tonumber(ARGV[2])
local drop_oldest = ARGV[3] == '1'
local missing, queued = 0, 0
local owners, drops = {}, {}
local seen = {}

for t = 1, targets do
  local sess = KEYS[2 * t - 1]
  local inbox = KEYS[2 * t]
  local qos = ARGV[3 + 2 * t]
  local worker = redis.call('HGET', sess, 'worker')
  local store = true
  if not worker then
    missing = missing + 1
    store = false
  elseif limit < 1 or redis.call('XLEN', inbox) >= limit then
    if string.sub(qos, 1, 1) ~= '0' then
      drops[#drops + 1] = t
      drops[#drops + 1] = 1
      store = false
    elseif limit >= 1 and drop_oldest and inbox_drop_oldest(sess, inbox) then
      drops[#drops + 1] = t
      drops[#drops + 1] = 3
    else
      drops[#drops + 1] = t
      drops[#drops + 1] = 2
      store = false
    end
  end
  if store then
    local seq = redis.call('HINCRBY', sess, 'seq', 1)
    redis.call('XADD', inbox, seq .. '-0', 'q', qos, 'i', ARGV[4 + 2 * t], 'm', ARGV[1])
    queued = queued + 1
    if worker ~= '' and not seen[worker] then
      seen[worker] = true
      owners[#owners + 1] = worker
    end
  end
end
return {missing, queued, owners, drops, 0}
