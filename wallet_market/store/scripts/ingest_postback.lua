-- Append a partner postback to the event stream once per (partner, event id).
-- KEYS[1] = the event stream (keys.event_stream)
-- KEYS[2] = this postback's record (keys.postback_record)
-- KEYS[3] = the partner's postbacks of the event's day (keys.postbacks_of_day), read by reconciliation
-- KEYS[4] = the record of the event a reversal undoes (reversals only)
-- ARGV[1] = the stream payload
-- ARGV[2] = the postback's type
-- ARGV[3] = the postback's event id
-- ARGV[4] = the day of the postback (YYYYMMDD): a reversal is booked on its own day
-- ARGV[5] = seconds the records are kept
-- ARGV[6] = when the postback occurred, epoch seconds (its score in the day's index)
-- Returns 'accepted', 'duplicate', 'already_reversed' (another event reversed it first),
-- 'reverses_a_reversal' or 'reversed_before_arrival' (a reversal named this reversal).
local ttl = tonumber(ARGV[5])
if redis.call('HEXISTS', KEYS[2], 'entry') == 1 then
  return 'duplicate'
end
if ARGV[2] == 'reversed' then
  if redis.call('HEXISTS', KEYS[2], 'reversed_by') == 1 then
    return 'reversed_before_arrival'
  end
  local by = redis.call('HGET', KEYS[4], 'reversed_by')
  if by and by ~= ARGV[3] then
    return 'already_reversed'
  end
  if redis.call('HGET', KEYS[4], 'type') == 'reversed' then
    return 'reverses_a_reversal'
  end
  redis.call('HSET', KEYS[4], 'reversed_by', ARGV[3], 'reversal_day', ARGV[4])
  redis.call('EXPIRE', KEYS[4], ttl)
end
redis.call('HSET', KEYS[2], 'entry', ARGV[1], 'type', ARGV[2])
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[3])
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
return 'accepted'
