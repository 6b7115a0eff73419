-- Add one postback record to its partner's day index, as ingestion would have (for records
-- written before the index existed). The index is kept at least as long as the record.
-- KEYS[1] = the postback's record (keys.postback_record)
-- KEYS[2] = the partner's postbacks of the event's day (keys.postbacks_of_day)
-- ARGV[1] = when the postback occurred, epoch seconds (its score in the index)
-- ARGV[2] = the postback's event id
-- ARGV[3] = seconds the index is kept when the record has no expiry
-- Returns 1 when the event id was added, 0 when it was there already or the record is gone.
local ttl = redis.call('TTL', KEYS[1])
if ttl == -2 then
  return 0
end
if ttl < 0 then
  ttl = tonumber(ARGV[3])
end
local added = redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
local left = redis.call('TTL', KEYS[2])
if left < ttl then
  redis.call('EXPIRE', KEYS[2], ttl)
end
return added
