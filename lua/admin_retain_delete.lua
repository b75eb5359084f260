-- admin_retain_delete: delete retained messages of one tenant, each only if it is still the one seen.
-- KEYS: 1 retain
-- ARGV: pairs: topic, header prefix of the blob that was inspected (the stored blob must start with it)
-- Returns: how many topics were deleted. A topic re-retained since it was inspected (its blob no
--          longer starts with the same header: other time, qos or expiry) is kept.
local n = 0
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and string.sub(cur, 1, #ARGV[i + 1]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
