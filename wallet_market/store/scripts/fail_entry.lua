-- Count one failed attempt to apply an event-stream entry; past the last attempt,
-- set the entry aside in the dead-letter stream with its reason and acknowledge it,
-- in one step, so it is set aside once and the stream keeps flowing.
-- KEYS[1] = the event stream (keys.event_stream)
-- KEYS[2] = failed attempts per entry (keys.apply_failures)
-- KEYS[3] = the dead-letter stream (keys.dead_letters)
-- ARGV[1] = the consumer group
-- ARGV[2] = the entry id
-- ARGV[3] = why it failed
-- ARGV[4] = attempts allowed
-- ARGV[5] = dead letters kept (approximate MAXLEN)
-- Returns {'gone', 0} when the entry is no longer pending (applied or set aside by
-- another worker), {'retry', attempts} or {'dead', attempts}.
local id = ARGV[2]
if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
  return {'gone', 0}
end
local attempts = redis.call('HINCRBY', KEYS[2], id, 1)
if attempts < tonumber(ARGV[4]) then
  return {'retry', attempts}
end
local fields = {'entry_id', id, 'reason', ARGV[3], 'attempts', tostring(attempts)}
local found = redis.call('XRANGE', KEYS[1], id, id)
if #found > 0 then
  local raw = found[1][2]
  for i = 1, #raw, 2 do
    if raw[i] ~= 'entry_id' and raw[i] ~= 'reason' and raw[i] ~= 'attempts' then
      fields[#fields + 1] = raw[i]
      fields[#fields + 1] = raw[i + 1]
    end
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('HDEL', KEYS[2], id)
return {'dead', attempts}
