-- Count clicks on partner products as leads toward the partners' daily caps, atomically.
-- A click is counted only while the partner is below the leads it may have by now
-- (its cap spread over the day plus a burst, never above the cap); a partner that
-- reaches that line joins the day's at-cap set, which layouts read to stop placing it.
-- KEYS[1] = leads counted per partner today (keys.leads_today)
-- KEYS[2] = clicks already decided today, click key → 1 counted / 0 refused (keys.lead_marks)
-- KEYS[3] = partners at their cap or ahead of their pace today (keys.leads_at_cap)
-- ARGV[1] = seconds the day's keys are kept
-- ARGV[2..] = triples: click key, partner id, leads allowed by now
-- Returns one flag per click: 1 counted, 0 refused; a click decided before gets its first answer.
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 3 do
  local mark, partner, allowed = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local decided = redis.call('HGET', KEYS[2], mark)
  if decided then
    out[#out + 1] = tonumber(decided)
  else
    local count = tonumber(redis.call('HGET', KEYS[1], partner) or '0')
    local taken = 0
    if count < allowed then
      count = redis.call('HINCRBY', KEYS[1], partner, 1)
      taken = 1
    end
    redis.call('HSET', KEYS[2], mark, taken)
    if count >= allowed then
      redis.call('SADD', KEYS[3], partner)
    end
    out[#out + 1] = taken
  end
end
for i = 1, 3 do
  redis.call('EXPIRE', KEYS[i], ttl)
end
return out
