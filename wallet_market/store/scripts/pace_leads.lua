-- Re-decide which partners are at their lead cap or ahead of their pace, as the day moves on.
-- KEYS[1] = leads counted per partner today (keys.leads_today)
-- KEYS[2] = partners at their cap or ahead of their pace today (keys.leads_at_cap)
-- ARGV[1] = seconds the day's keys are kept
-- ARGV[2..] = pairs: partner id, leads allowed by now (-1: no cap)
-- Returns the partners now in the set.
for i = 2, #ARGV, 2 do
  local partner, allowed = ARGV[i], tonumber(ARGV[i + 1])
  local count = tonumber(redis.call('HGET', KEYS[1], partner) or '0')
  if allowed >= 0 and count >= allowed then
    redis.call('SADD', KEYS[2], partner)
  else
    redis.call('SREM', KEYS[2], partner)
  end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return redis.call('SMEMBERS', KEYS[2])
