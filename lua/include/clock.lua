-- clock (include): the server's clock in microseconds (Redis TIME), the source of connection epochs.

local function clock_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
