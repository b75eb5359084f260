-- session_wipe (include): delete one session's data and the routes of its subscriptions.
-- session_wipe(routes, client, sess, subs, inbox, rel, q2in): every key comes from the including
-- script's KEYS. Returns true when a route was removed (the caller then bumps rver). Index entries
-- (sexp, sessidx, wills) are the caller's business: each script keeps a different set of them.
--#include routes

local function session_wipe(routes, client, sess, subs, inbox, rel, q2in)
  local removed = routes_drop_all(routes, client, subs)
  redis.call('DEL', sess, subs, inbox, rel, q2in)
  return removed
end
