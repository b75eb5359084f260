-- session_attrs: record the auth provider's attributes of the connection holding the session.
-- KEYS: 1 sess
-- ARGV: 1 epoch of the connection, 2 the encoded attributes ({"e": epoch, "a": {...}})
-- Written only while that connection still holds the session (its epoch is the record's): a session
-- taken over, ended or removed meanwhile is left alone, and a removed record is never re-created.
-- Returns: 1 when written, 0 when not.
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
if epoch == nil or epoch ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'attrs', ARGV[2])
return 1
