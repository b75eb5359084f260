-- session_wipe (include): delete one session's data; its routes are the tenant's, dropped afterwards.
-- session_wipe(sess, subs, inbox, rel, q2in, q2seen): every key comes from the including script's KEYS.
-- Returns the session's generation (sess field gen, "" when absent) and its topic filters, which the
-- caller drops from the tenant's routes with tenant_apply (only route values of that generation).

local function session_wipe(sess, subs, inbox, rel, q2in, q2seen)
  local gen = redis.call('HGET', sess, 'gen') or ''
  local filters = redis.call('HKEYS', subs)
  redis.call('DEL', sess, subs, inbox, rel, q2in, q2seen)
  return gen, filters
end
