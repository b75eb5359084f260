-- tenant_apply: apply a list of changes to a tenant's indexes (its slot), after the session step that
-- made them necessary (docs/redis-keys.md "Two slots": the session is the truth, these are derived).
-- KEYS: 1 routes, 2 rver, 3 sessidx, 4 sessgen, 5 sexp, 6 wills, 7 shcount (one tenant's tag),
--       8 route watchers (only where route caches are push-invalidated: a single Redis; see N)
-- ARGV: a flat list of operations, each an op code and its arguments:
--   P client filter value   route put: routes[client \0 filter] = value (worker \0 persistent \0 opts \0 gen)
--   G client filter value n shared route put, only when the client is already a member of the shared
--                           filter ($share/<group>/<f> or $oshare/...) or it has fewer than n members
--                           (MaxSharedGroupMembers); else nothing is written and the filter is reported
--   D client filter gen     route drop, only a value of generation gen ("" = whatever it holds)
--   A client gen            session index add: sessidx client, sessgen[client] = gen
--   R client gen            session index remove, only when sessgen[client] is gen ("" = always)
--   X client at             expiry hint: sexp[client] = at (ms)
--   x client at             expiry hint removal, only when its score is still at ("" = always)
--   W client at             will hint: wills[client] = at (ms)
--   w client at             will hint removal, only when its score is still at ("" = always)
--   N channel tenant writer when the routes change: PUBLISH the JSON array [tenant, stamp, writer, changes,
--                           version] on channel (stamp: "version.clock-us", the change's identity), changes being
--                           this call's route writes in order (["P", client, filter, value] or ["D", client,
--                           filter]; false past MAX_DELTA), so every worker's route
--                           cache moves to the version or drops the tenant (tidemq/store/route_watch.py), and
--                           return the watchers whose lease (KEYS[8]: watcher -> lease end, ms) is still
--                           running, so the writer can wait for their acknowledgements before it acknowledges
-- Returns: {changed, {filter, value, ...}, {filter, ...}}: changed is 1 when the routes changed (rver was
-- bumped), else 0; then the filter and former value of every route a D dropped (to put back if the step
-- that followed failed); then the filters a G refused; with N and a change, then the new version, the
-- server clock (ms), {watcher, lease end, ...} (expired watchers are removed) and the stamp. Conditional removals make a late step of an older
-- session harmless to a newer one.
-- shcount (filter -> routes of that shared filter, i.e. its members) is kept by every P, G and D here,
-- the only writer of routes; it is counted from the routes once (field "\0built" marks it complete), the
-- first time a G needs it, so routes written before it existed are counted too.
local changed = false
local notify = nil
local delta = {}
local MAX_DELTA = 1000
local function record(change)
  if delta and #delta < MAX_DELTA then
    delta[#delta + 1] = change
  else
    delta = false
  end
end
local dropped = {}
local refused = {}
local i = 1
local BUILT = '\0built'
local built = nil
local function is_shared(filter)
  return string.sub(filter, 1, 7) == '$share/' or string.sub(filter, 1, 8) == '$oshare/'
end
local function counts_built()
  if built == nil then
    built = redis.call('HEXISTS', KEYS[7], BUILT) == 1
  end
  return built
end
local function build_counts()
  if counts_built() then
    return
  end
  redis.call('DEL', KEYS[7])
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    local sep = string.find(field, '\0', 1, true)
    if sep then
      local filter = string.sub(field, sep + 1)
      if is_shared(filter) then
        redis.call('HINCRBY', KEYS[7], filter, 1)
      end
    end
  end
  redis.call('HSET', KEYS[7], BUILT, '1')
  built = true
end
local function count(filter, delta)
  if is_shared(filter) and counts_built() then
    if redis.call('HINCRBY', KEYS[7], filter, delta) <= 0 then
      redis.call('HDEL', KEYS[7], filter)
    end
  end
end
local function gen_of(value)
  return string.match(value, '([^%z]*)$') or ''
end
local function zrem_if(key, client, at)
  if at == '' then
    redis.call('ZREM', key, client)
    return
  end
  local score = redis.call('ZSCORE', key, client)
  if score and tonumber(score) == tonumber(at) then
    redis.call('ZREM', key, client)
  end
end
while i <= #ARGV do
  local op = ARGV[i]
  local client = ARGV[i + 1]
  if op == 'P' then
    local field = client .. '\0' .. ARGV[i + 2]
    local cur = redis.call('HGET', KEYS[1], field)
    if cur ~= ARGV[i + 3] then
      redis.call('HSET', KEYS[1], field, ARGV[i + 3])
      changed = true
      record({'P', client, ARGV[i + 2], ARGV[i + 3]})
      if not cur then
        count(ARGV[i + 2], 1)
      end
    end
    i = i + 4
  elseif op == 'G' then
    local filter = ARGV[i + 2]
    local field = client .. '\0' .. filter
    local cur = redis.call('HGET', KEYS[1], field)
    if cur then  -- already a member: an update
      if cur ~= ARGV[i + 3] then
        redis.call('HSET', KEYS[1], field, ARGV[i + 3])
        changed = true
        record({'P', client, filter, ARGV[i + 3]})
      end
    else
      build_counts()
      if (tonumber(redis.call('HGET', KEYS[7], filter)) or 0) < tonumber(ARGV[i + 4]) then
        redis.call('HSET', KEYS[1], field, ARGV[i + 3])
        redis.call('HINCRBY', KEYS[7], filter, 1)
        changed = true
        record({'P', client, filter, ARGV[i + 3]})
      else
        refused[#refused + 1] = filter
      end
    end
    i = i + 5
  elseif op == 'D' then
    local field = client .. '\0' .. ARGV[i + 2]
    local value = redis.call('HGET', KEYS[1], field)
    if value and (ARGV[i + 3] == '' or gen_of(value) == ARGV[i + 3]) then
      redis.call('HDEL', KEYS[1], field)
      changed = true
      record({'D', client, ARGV[i + 2]})
      count(ARGV[i + 2], -1)
      dropped[#dropped + 1] = ARGV[i + 2]
      dropped[#dropped + 1] = value
    end
    i = i + 4
  elseif op == 'A' then
    redis.call('ZADD', KEYS[3], 0, client)
    redis.call('HSET', KEYS[4], client, ARGV[i + 2])
    i = i + 3
  elseif op == 'R' then
    if ARGV[i + 2] == '' or redis.call('HGET', KEYS[4], client) == ARGV[i + 2] then
      redis.call('ZREM', KEYS[3], client)
      redis.call('HDEL', KEYS[4], client)
    end
    i = i + 3
  elseif op == 'X' then
    redis.call('ZADD', KEYS[5], tonumber(ARGV[i + 2]), client)
    i = i + 3
  elseif op == 'x' then
    zrem_if(KEYS[5], client, ARGV[i + 2])
    i = i + 3
  elseif op == 'W' then
    redis.call('ZADD', KEYS[6], tonumber(ARGV[i + 2]), client)
    i = i + 3
  elseif op == 'w' then
    zrem_if(KEYS[6], client, ARGV[i + 2])
    i = i + 3
  elseif op == 'N' then
    notify = {client, ARGV[i + 2], ARGV[i + 3]}
    i = i + 4
  else
    return redis.error_reply('tenant_apply: unknown op ' .. tostring(op))
  end
end
if changed then
  local version = redis.call('INCR', KEYS[2])
  if notify and KEYS[8] then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    -- the change's identity for acknowledgements: its version and the clock (a version repeats after a flush)
    local stamp = version .. '.' .. t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('PUBLISH', notify[1], cjson.encode({notify[2], stamp, notify[3], delta, version}))
    local live = {}
    local all = redis.call('HGETALL', KEYS[8])
    for j = 1, #all, 2 do
      if tonumber(all[j + 1]) > now then
        live[#live + 1] = all[j]
        live[#live + 1] = all[j + 1]
      else
        redis.call('HDEL', KEYS[8], all[j])
      end
    end
    return {1, dropped, refused, version, now, live, stamp}
  end
  return {1, dropped, refused}
end
return {0, dropped, refused}
