-- Apply one event to a user's frequency caps and partner suppression, once per stream entry.
-- KEYS[1] = stream entries already applied to this user on the event's day (keys.user_events_applied)
-- KEYS[2] = the user's impressions per product on that day (keys.impressions_today)
-- KEYS[3] = the user's suppressed partners, partner → until epoch second (keys.suppressed_partners)
-- ARGV[1] = the stream entry id
-- ARGV[2] = the product impressed ('' for none)
-- ARGV[3] = the partner to suppress ('' for none)
-- ARGV[4] = suppressed until, epoch seconds
-- ARGV[5] = seconds the day's keys are kept
-- ARGV[6] = now, epoch seconds
-- Returns 1 when applied, 0 when this entry was applied before.
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
if ARGV[3] ~= '' then
  local until_at = tonumber(ARGV[4])
  local current = tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0')
  if until_at > current then
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  end
  local keep = until_at - tonumber(ARGV[6])
  if keep > 0 and redis.call('TTL', KEYS[3]) < keep then
    redis.call('EXPIRE', KEYS[3], keep)
  end
end
return 1
