-- Add one event-stream entry to an experiment's per-unit counters, once per entry.
-- KEYS[1] = entries already applied to this experiment on the entry's day (keys.experiment_applied)
-- KEYS[2] = the arm's counters, "<unit>|<measure>" → n (keys.experiment_units)
-- KEYS[3] = for 'keep' and 'reverse': the postback's record in the experiment (keys.experiment_postback)
-- ARGV[1] = the stream entry id
-- ARGV[2] = seconds the applied marks are kept
-- ARGV[3] = 'add' (an app event), 'keep' (a partner's postback, remembered for its reversal)
--           or 'reverse' (takes back what the postback named by KEYS[3] added, once)
-- ARGV[4] = seconds a postback's record is kept
-- ARGV[5..] = field, n, field, n, ... (the increments; none for 'reverse')
-- Returns 1 when applied, 0 when this entry was applied before.
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local mode = ARGV[3]
if mode == 'reverse' then
  local record = KEYS[3]
  if redis.call('HGET', record, '~reversed') == '1' then
    return 1
  end
  local fields = redis.call('HGETALL', record)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 1) ~= '~' then
      redis.call('HINCRBY', KEYS[2], fields[i], -tonumber(fields[i + 1]))
    end
  end
  redis.call('HSET', record, '~reversed', '1')
  redis.call('EXPIRE', record, ARGV[4])
  return 1
end
if mode == 'keep' then
  -- a reversal that came first already took this postback back: it adds nothing
  if redis.call('HGET', KEYS[3], '~reversed') == '1' then
    return 1
  end
end
for i = 5, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  if mode == 'keep' then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
if mode == 'keep' then
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
