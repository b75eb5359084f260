-- admin_retain_delete: delete retained messages of one tenant, each only if it is still the one seen,
-- and their entries in the topic-name index (lua/include/retain_index.lua; rebuilt first if missing).
-- KEYS: 1 retain, 2 retain index
-- ARGV: pairs: topic, header prefix of the blob that was inspected (the stored blob must start with it)
-- Returns: how many topics were deleted. A topic re-retained since it was inspected (its blob no
--          longer starts with the same header: other time, qos or expiry) is kept.
--#include retain_index
retain_index_ensure(KEYS[1], KEYS[2])
local n = 0
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and string.sub(cur, 1, #ARGV[i + 1]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    retain_index_unset(KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
