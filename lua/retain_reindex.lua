-- retain_reindex: build the topic-name index of a tenant's retained messages written before it existed
-- (the upgrade path; lua/include/retain_index.lua). A no-op when the index exists or nothing is retained.
-- KEYS: 1 retain, 2 retain index
-- ARGV: none
-- Returns: how many topics were indexed (0: nothing to do).
--#include retain_index
return retain_index_ensure(KEYS[1], KEYS[2])
