-- inbox_drop_oldest (include): delete the oldest QoS 0 entry of an inbox (QoS0DropOldest).
-- inbox_drop_oldest(sess, inbox): true when an entry was deleted, false when the inbox holds none.
-- The session field q0lo is a sequence number below which every live entry is QoS 1/2 (entries only
-- ever get higher seqs, so it only grows); the scan starts there and moves it, so each entry is
-- scanned at most once over the inbox's life (amortized O(1) per append). It lives in the session
-- record, so it goes wherever the session goes.

local function inbox_drop_oldest(sess, inbox)
  local from = tonumber(redis.call('HGET', sess, 'q0lo')) or 1
  while true do
    local page = redis.call('XRANGE', inbox, from .. '-0', '+', 'COUNT', 64)
    if #page == 0 then
      redis.call('HSET', sess, 'q0lo', from)
      return false
    end
    for _, e in ipairs(page) do
      local seq = tonumber(string.match(e[1], '^(%d+)'))
      local fields = e[2]
      for k = 1, #fields - 1, 2 do
        if fields[k] == 'q' then
          if string.sub(fields[k + 1], 1, 1) == '0' then
            redis.call('XDEL', inbox, e[1])
            redis.call('HSET', sess, 'q0lo', seq + 1)
            return true
          end
          break
        end
      end
      from = seq + 1
    end
  end
end
