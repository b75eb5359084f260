-- retain_expire: drop a tenant's expired retained messages, one page of its topic-name index per call, so
-- retained messages whose Message Expiry Interval ran out do not stay in Redis (and count against the
-- tenant's RetainedTopicLimit) until someone overwrites them (lua/include/retain_index.lua).
-- KEYS: 1 retain, 2 retain index
-- ARGV: 1 now (wall clock ms), 2 cursor: the last index member looked at ("" = from the start),
--       3 members to look at
-- Returns: {next cursor ("" = the index was read to its end), topics dropped}
--#include retain_index
retain_index_ensure(KEYS[1], KEYS[2])
local now = tonumber(ARGV[1])
local start = '-'
if ARGV[2] ~= '' then
  start = '(' .. ARGV[2]
end
local page = redis.call('ZRANGEBYLEX', KEYS[2], start, '+', 'LIMIT', 0, tonumber(ARGV[3]))
local dropped = 0
for i = 1, #page do
  local member = page[i]
  local sep = string.find(member, '\0', 1, true)
  if sep then
    local exp = tonumber(string.sub(member, sep + 1)) or 0
    if exp > 0 and exp <= now then
      -- the member names the message the hash holds for this topic (they change together): it expired
      redis.call('HDEL', KEYS[1], string.sub(member, 1, sep - 1))
      redis.call('ZREM', KEYS[2], member)
      dropped = dropped + 1
    end
  end
end
local nxt = ''
if #page == tonumber(ARGV[3]) then
  nxt = page[#page]
end
return {nxt, dropped}
