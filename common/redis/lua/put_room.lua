-- Write a room object unless it would move the cache backwards. Used by every writer of room:<roomId>
-- in the Room Service (create, re-cache on a miss, PATCH, the worker's restore and sweep), so that a
-- writer holding an older read of the room cannot undo a newer change or bring an ended room back.
--
-- KEYS[1]  room:<roomId>              the room object (JSON with a numeric `version`)
-- KEYS[2]  {room:<roomId>}:ended      present once the room has ended: nothing may cache it again
-- ARGV[1]  the room object (JSON)
-- ARGV[2]  its version
-- ARGV[3]  expiry, Unix time in ms (the room's expiresAt)
-- ARGV[4]  'nx' to write only where there is no object at all (the sweep), else ''
--
-- Returns 1 if written, 0 if not.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[4] == 'nx' then
    return 0
  end
  local readable, room = pcall(cjson.decode, current)
  if readable and type(room) == 'table' and type(room['version']) == 'number'
      and room['version'] >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
