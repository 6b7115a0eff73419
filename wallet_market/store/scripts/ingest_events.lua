-- Append app events (impressions, clicks) to the event stream, each at most once.
-- KEYS[1] = the event stream (keys.event_stream)
-- KEYS[2..n+1] = the idempotency mark of each event (keys.event_seen), in order
-- ARGV[1] = seconds an idempotency mark is kept
-- ARGV[2..n+1] = each event's stream payload, in the same order
-- Returns one flag per event: 1 appended, 0 a duplicate of an event already appended.
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
