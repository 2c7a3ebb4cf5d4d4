-- Write a room object unless it would move the cache backwards. Used by every writer of room:<roomId>
-- in the Room Service (create, re-cache on a miss, PATCH, the worker's restore and sweep), so that a
-- writer holding an older read of the room cannot undo a newer change or bring an ended room back.
--
-- The Room Service owns these keys: a value that is not one of its own (another type, or a string
-- that is no room object) was written by something else, and is replaced rather than left to fail
-- every write of the room with WRONGTYPE. A GET that fails says so at no extra cost on the common
-- path (no TYPE call).
--
-- KEYS[1]  room:<roomId>              the room object (JSON with a numeric `version`)
-- KEYS[2]  {room:<roomId>}:ended      present once the room has ended: nothing may cache it again
-- KEYS[3]  {room:<roomId>}:participants  Signaling's participant set (join.lua): it expires with the room
-- ARGV[1]  the room object (JSON)
-- ARGV[2]  its version
-- ARGV[3]  expiry, Unix time in ms (the room's expiresAt)
-- ARGV[4]  'nx' to write only where there is no room object at all (the sweep), else ''
-- ARGV[5..] the participants the room bars (its `removedIds`), taken out of KEYS[3] with the write
--
-- Returns {written, replaced}: written 1 if the object was written, else 0; replaced the number of
-- foreign values replaced or removed (0, 1 or 2).

local replaced = 0
local ended = redis.pcall('GET', KEYS[2])
if type(ended) == 'table' and ended['err'] then
  -- Not the mark (a string, set by an end): no end has happened since it was written.
  redis.call('DEL', KEYS[2])
  replaced = replaced + 1
elseif ended then
  return {0, replaced}
end
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' and current['err'] then
  replaced = replaced + 1  -- another type: SET below replaces it
elseif current then
  local readable, room = pcall(cjson.decode, current)
  if readable and type(room) == 'table' and type(room['version']) == 'number' then
    if ARGV[4] == 'nx' or room['version'] >= tonumber(ARGV[2]) then
      return {0, replaced}
    end
  else
    replaced = replaced + 1  -- a string that is no room object
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
-- A moved end moves the participants' expiry with it, in the same step (join.lua only sets it at a
-- join): extended, the set outlives the old end; shortened, nobody stays past the new one. A no-op
-- when there is no set; PEXPIREAT takes a key of any type, so nothing another writer left fails it.
redis.call('PEXPIREAT', KEYS[3], ARGV[3])
-- And the hash of when each joined, which join.lua keeps beside the set (its key derived as join.lua does).
redis.call('PEXPIREAT', '{' .. KEYS[1] .. '}:joined', ARGV[3])
-- A removed participant leaves at once, in the same step as the object that bars them is written
-- (join.lua refuses them from then on). A no-op for those not in the set; none for most rooms.
if #ARGV > 4 then
  redis.pcall('ZREM', KEYS[3], unpack(ARGV, 5))  -- pcall: a value of another type there is join.lua's to meet
end
return {1, replaced}
