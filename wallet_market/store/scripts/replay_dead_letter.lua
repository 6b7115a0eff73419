-- Put one dead letter back on the event stream, once: the entry is appended anew
-- and removed from the dead-letter stream in the same step (a second replay of
-- the same dead letter finds nothing).
-- KEYS[1] = the dead-letter stream (keys.dead_letters)
-- KEYS[2] = the event stream (keys.event_stream)
-- ARGV[1] = the dead letter's id
-- Returns the new entry's id, or false when there is no such dead letter.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return false
end
local raw = found[1][2]
local fields = {}
local origin = nil
local original = nil
for i = 1, #raw, 2 do
  local name = raw[i]
  if name == 'entry_id' then
    original = raw[i + 1]
  elseif name == 'o' then
    origin = raw[i + 1]
  elseif name ~= 'reason' and name ~= 'attempts' then
    fields[#fields + 1] = name
    fields[#fields + 1] = raw[i + 1]
  end
end
-- The first entry id travels with the event: its effects on the user are applied once.
fields[#fields + 1] = 'o'
fields[#fields + 1] = origin or original or ARGV[1]
local new_id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
