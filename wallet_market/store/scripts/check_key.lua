-- Check an API key and count its request, in one step: nothing is written for a key
-- that is not (or no longer) in the key records, so made-up keys leave no trace.
-- KEYS[1] = the API key records (keys.api_keys)
-- KEYS[2] = the key's request counter this minute (keys.rate_limit)
-- KEYS[3] = when each key was last used (keys.api_keys_last_used)
-- ARGV[1] = the key's hash
-- ARGV[2] = '1' to return the key's record, '0' when the caller holds it already
-- ARGV[3] = seconds the counter is kept
-- ARGV[4] = now, epoch seconds
-- Returns {1, requests this minute, record or ''} for a known key, {0, 0, ''} otherwise.
-- The first request of a minute also notes when the key was used: once a minute at most.
local record = ''
if ARGV[2] == '1' then
  record = redis.call('HGET', KEYS[1], ARGV[1])
  if not record then
    return {0, 0, ''}
  end
elseif redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return {0, 0, ''}
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
end
return {1, count, record}
