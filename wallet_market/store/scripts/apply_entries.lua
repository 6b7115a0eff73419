-- Turn event-stream entries into counters, each exactly once and never by half.
-- An entry is applied only while it is pending in the group, and is acknowledged
-- in the same step: a second worker holding it after a reclaim, or a retry, adds
-- nothing. An entry whose writes fail (a counter that would overflow, a key of the
-- wrong type) has what it already wrote taken back and stays pending; it is
-- returned with the reason, and the others of the batch are applied all the same.
-- KEYS[1] = the event stream (keys.event_stream)
-- KEYS[2] = failed attempts per entry (keys.apply_failures): cleared for entries applied
-- KEYS[3..] = the counter, learned-rate and postback-record keys the entries name, by index
-- ARGV[1] = the consumer group
-- ARGV[2] = JSON list of entries:
--   {"id": stream id,
--    "add": [[key index, field, "n"], ...]                counters and learned counts to increment;
--           [key index, field, "n", high field, "h"]       a money measure: its low and high parts,
--                                                          whole units of 10^12 carried from low to high
--    "keep": record index, "undo": JSON string,          an original postback: what its reversal takes back
--    "rev_key": counter index, "rev_day": "YYYYMMDD",    the day of its reversal, when one was announced
--    "reverse": [record index, counter index]}           a reversal: the original's record, this day's counters
-- Returns {'applied', n, {failed id, reason, ...}} or {'retry', id} when a reversal was
-- applied after the caller read the records (nothing was applied then).
local stream = KEYS[1]
local failures = KEYS[2]
local group = ARGV[1]
local entries = cjson.decode(ARGV[2])
local UNIT = 1e12
local UNIT_ZEROS = '000000000000'

local types = {}
local function is_hash(key)
  local t = types[key]
  if t == nil then
    t = redis.call('TYPE', key)['ok']
    types[key] = t
  end
  return t == 'hash' or t == 'none'
end

local function negate(n)
  if string.sub(n, 1, 1) == '-' then
    return string.sub(n, 2)
  end
  return '-' .. n
end

-- The increments of the entry being applied, to take back should a later one fail.
local done = {}
local failure = nil

local function incr(key, field, n)
  n = tostring(n)
  local r = redis.pcall('HINCRBY', key, field, n)
  if type(r) == 'table' and r.err then
    failure = field .. ': ' .. r.err
    return nil
  end
  done[#done + 1] = {key, field, n}
  return r
end

local function take_back()
  for i = #done, 1, -1 do
    local d = done[i]
    if d[3] ~= '0' then
      redis.call('HINCRBY', d[1], d[2], negate(d[3]))
    end
  end
  done = {}
end

-- Add n to field; for a money measure also h to its high field, then carry the
-- low field's whole units of 10^12 into it (read as text: exact at any size).
local function add(key, field, n, high, h)
  local r = incr(key, field, n)
  if r == nil then
    return false
  end
  if high == nil then
    return true
  end
  if h ~= nil and tostring(h) ~= '0' and incr(key, high, h) == nil then
    return false
  end
  if r >= UNIT or r <= -UNIT then
    local text = redis.call('HGET', key, field)
    local sign = ''
    if string.sub(text, 1, 1) == '-' then
      sign, text = '-', string.sub(text, 2)
    end
    local carry = sign .. string.sub(text, 1, #text - 12)
    if incr(key, field, negate(carry) .. UNIT_ZEROS) == nil or incr(key, high, carry) == nil then
      return false
    end
  end
  return true
end

-- Apply a postback's stored "undo" to counters; false when it failed.
local function apply_undo(counters, taken)
  local ok, ops = pcall(cjson.decode, taken)
  if not ok or type(ops) ~= 'table' then
    failure = 'the stored undo of the reversed event is not readable'
    return false
  end
  if ops[1] == nil then -- {field: "n"}, as records written before money measures had high fields
    for field, n in pairs(ops) do
      if not add(counters, field, n) then
        return false
      end
    end
  else
    for _, a in ipairs(ops) do
      if not add(counters, a[1], a[2], a[3], a[4]) then
        return false
      end
    end
  end
  return true
end

local function keys_of(e)
  local out = {}
  for _, a in ipairs(e.add) do
    out[#out + 1] = KEYS[a[1]]
  end
  if e.keep then out[#out + 1] = KEYS[e.keep] end
  if e.rev_key then out[#out + 1] = KEYS[e.rev_key] end
  if e.reverse then
    out[#out + 1] = KEYS[e.reverse[1]]
    out[#out + 1] = KEYS[e.reverse[2]]
  end
  return out
end

-- Every write of one entry; false (with `failure` set) when one of them failed.
local function apply_entry(e)
  for _, key in ipairs(keys_of(e)) do
    if not is_hash(key) then
      failure = key .. ' holds a ' .. types[key] .. ', not a hash'
      return false
    end
  end
  for _, a in ipairs(e.add) do
    if not add(KEYS[a[1]], a[2], a[3], a[4], a[5]) then
      return false
    end
  end
  if e.keep then
    local record = KEYS[e.keep]
    local undone = false
    if e.rev_key and redis.call('HGET', record, 'reversal_pending') == '1'
        and redis.call('HGET', record, 'reversal_applied') ~= '1' then
      if not apply_undo(KEYS[e.rev_key], e.undo) then
        return false
      end
      undone = true
    end
    redis.call('HSET', record, 'undo', e.undo)
    if undone then
      redis.call('HSET', record, 'reversal_applied', '1')
    end
  end
  if e.reverse then
    local record = KEYS[e.reverse[1]]
    local taken = redis.call('HGET', record, 'undo')
    if taken then
      if redis.call('HGET', record, 'reversal_applied') ~= '1' then
        if not apply_undo(KEYS[e.reverse[2]], taken) then
          return false
        end
        redis.call('HSET', record, 'reversal_applied', '1')
      end
    else
      redis.call('HSET', record, 'reversal_pending', '1')
    end
  end
  return true
end

for _, e in ipairs(entries) do
  if e.keep and is_hash(KEYS[e.keep]) then
    local record = KEYS[e.keep]
    if redis.call('HGET', record, 'reversal_pending') == '1' then
      local day = redis.call('HGET', record, 'reversal_day')
      if day ~= e.rev_day then
        return {'retry', e.id}
      end
    end
  end
end

local clear_failures = redis.call('EXISTS', failures) == 1
local applied = 0
local failed = {}
for _, e in ipairs(entries) do
  if #redis.call('XPENDING', stream, group, e.id, e.id, 1) > 0 then
    done, failure = {}, nil
    if apply_entry(e) then
      redis.call('XACK', stream, group, e.id)
      if clear_failures then
        redis.call('HDEL', failures, e.id)
      end
      applied = applied + 1
    else
      take_back()
      failed[#failed + 1] = e.id
      failed[#failed + 1] = failure or 'failed'
    end
  end
end
return {'applied', applied, failed}
