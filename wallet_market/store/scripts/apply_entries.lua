-- Turn event-stream entries into counters, each exactly once.
-- An entry is applied only if this call acknowledges it (XACK answers 1): a
-- second worker holding the same entry after a reclaim, or a retry, adds nothing.
-- KEYS[1] = the event stream (keys.event_stream)
-- KEYS[2..] = the counter, learned-rate and postback-record keys the entries name, by index
-- ARGV[1] = the consumer group
-- ARGV[2] = JSON list of entries:
--   {"id": stream id,
--    "add": [[key index, field, "n"], ...],            counters and learned counts to increment
--    "keep": record index, "undo": JSON string,          an original postback: what its reversal takes back
--    "rev_key": counter index, "rev_day": "YYYYMMDD",    the day of its reversal, when one was announced
--    "reverse": [record index, counter index]}           a reversal: the original's record, this day's counters
-- Returns {'applied', n} or {'retry', id} when a reversal was applied after the caller read the records.
local stream = KEYS[1]
local group = ARGV[1]
local entries = cjson.decode(ARGV[2])

local function undo(record, counters)
  local taken = redis.call('HGET', record, 'undo')
  if not taken or redis.call('HGET', record, 'reversal_applied') == '1' then
    return
  end
  for field, n in pairs(cjson.decode(taken)) do
    redis.call('HINCRBY', counters, field, n)
  end
  redis.call('HSET', record, 'reversal_applied', '1')
end

for _, e in ipairs(entries) do
  if e.keep then
    local record = KEYS[e.keep]
    if redis.call('HGET', record, 'reversal_pending') == '1' then
      local day = redis.call('HGET', record, 'reversal_day')
      if day ~= e.rev_day then
        return {'retry', e.id}
      end
    end
  end
end

local applied = 0
for _, e in ipairs(entries) do
  if redis.call('XACK', stream, group, e.id) == 1 then
    applied = applied + 1
    for _, a in ipairs(e.add) do
      redis.call('HINCRBY', KEYS[a[1]], a[2], a[3])
    end
    if e.keep then
      local record = KEYS[e.keep]
      redis.call('HSET', record, 'undo', e.undo)
      if e.rev_key and redis.call('HGET', record, 'reversal_pending') == '1' then
        undo(record, KEYS[e.rev_key])
      end
    end
    if e.reverse then
      local record = KEYS[e.reverse[1]]
      if redis.call('HEXISTS', record, 'undo') == 1 then
        undo(record, KEYS[e.reverse[2]])
      else
        redis.call('HSET', record, 'reversal_pending', '1')
      end
    end
  end
end
return {'applied', applied}
