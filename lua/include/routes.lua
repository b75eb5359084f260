-- routes (include): the route entries of one session in the tenant's routes hash.
-- A route field is `client \0 filter`; its value is `worker \0 persistent \0 opts`, where worker is ""
-- for a persistent session (its messages go through its inbox). Every function gets the routes key
-- from the including script's KEYS; a caller bumps rver when one of them returns true.

-- the route value prefix `worker \0 persistent \0` of a session owned by `worker`
local function route_prefix(worker, persistent)
  local route_worker = worker
  if persistent == '1' then
    route_worker = ''
  end
  return route_worker .. '\0' .. persistent .. '\0'
end

-- set the route of `client` for `filter` to `value`; true when the stored value changed
local function route_put(routes, client, filter, value)
  local field = client .. '\0' .. filter
  if redis.call('HGET', routes, field) ~= value then
    redis.call('HSET', routes, field, value)
    return true
  end
  return false
end

-- remove the route of every filter in the session's `subs` hash; true when one was removed
local function routes_drop_all(routes, client, subs)
  local removed = false
  local filters = redis.call('HKEYS', subs)
  for i = 1, #filters do
    if redis.call('HDEL', routes, client .. '\0' .. filters[i]) == 1 then
      removed = true
    end
  end
  return removed
end
