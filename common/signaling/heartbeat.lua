-- Heartbeat for the Signaling service: the contract in docs/signaling.md.
--
-- KEYS[1]  room:<roomId>                  the room object the Room Service caches (JSON); read only
-- KEYS[2]  {room:<roomId>}:participants   sorted set: member = participant id, score = heartbeat expiry (ms)
-- ARGV[1]  participant id (non-empty)
-- ARGV[2]  heartbeat TTL in ms (positive integer)
--
-- Keeps a live member's slot; never admits anyone. Only join.lua admits, so a participant whose
-- heartbeat lapsed, or who left, comes back through a join (with a ticket) and its checks. One the
-- room's host removed is out of the set from the step that wrote the bar (put_room.lua): its heartbeat
-- answers not_member, and join.lua refuses it (removed). Should a writer have left it in (a process
-- of a release before removals wrote the object), the object's removedIds take it out here too.
--
-- Returns {outcome, count, maxParticipants}; outcome is one of
--   alive       a live member: its heartbeat now expires at now + TTL (count: live members)
--   not_member  absent, or its heartbeat had lapsed (the entry is removed): nothing was added; join
--               again (count: live members)
--   room_gone   no room object at KEYS[1]: nothing was changed (count and limit are 0)
-- maxParticipants is the room's limit, or 0 when the object cannot be read (below).
-- Bad arguments give an error reply.
--
-- Membership alone decides, before the room starts too: opensAtMs is not read. join.lua admits nobody
-- before opensAtMs (the start less the early-join allowance), so a member before the start is one it
-- let in early; answering not_started would only drop members admitted before a start moved later,
-- and newcomers still wait for join.lua to open the room.

if #KEYS ~= 2 or #ARGV ~= 2 then
  return redis.error_reply('ERR heartbeat takes 2 keys (room, participants) and 2 arguments (participant id, ttl ms)')
end
local participant = ARGV[1]
if participant == '' then
  return redis.error_reply('ERR participant id must not be empty')
end
-- As join.lua: digits only (tonumber() would take '1e3', '0x10', ' 5'), at most 15 so that now + ttl
-- stays exact in a Lua number (a double).
local ttl_arg = ARGV[2]
if not string.match(ttl_arg, '^[1-9]%d*$') or #ttl_arg > 15 then
  return redis.error_reply('ERR heartbeat ttl must be a positive integer number of milliseconds')
end
local ttl = tonumber(ttl_arg)

local raw = redis.call('GET', KEYS[1])
if not raw then
  -- The room ended (its host ended it, or its lifetime is over), or Redis lost the key: the Room
  -- Service tells which (GET /rooms/{roomId}). Nothing is touched meanwhile.
  return {'room_gone', 0, 0}
end
-- An object that is there but unreadable (not JSON, no integer maxParticipants) still says the room
-- lives: the Room Service deletes the key when a room ends, and the participants key's expiry still
-- follows the room key's. A heartbeat needs no limit, so it is judged on its own and answers 0 for
-- the limit (never a real one). room_gone instead would have Signaling disconnect a live room, or ask
-- GET /rooms/{roomId} on every member's heartbeat, for as long as a value the Room Service may not
-- replace (the version it already has) stays unreadable. A join meanwhile answers not_cached.
local limit = 0
local removed = nil
local decoded, room = pcall(cjson.decode, raw)
if decoded and type(room) == 'table' then
  local max = room['maxParticipants']
  if type(max) == 'number' and max >= 1 and max == math.floor(max) then
    limit = max
  end
  removed = room['removedIds']
end
local barred = false
if type(removed) == 'table' then
  for _, id in ipairs(removed) do
    if id == participant then
      barred = true
      break
    end
  end
end

-- Server time, the clock join.lua judges heartbeats by.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- As join.lua does: members whose heartbeat lapsed (score <= now) are gone, this one included.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if barred then
  redis.call('ZREM', KEYS[2], participant)
end
if barred or not redis.call('ZSCORE', KEYS[2], participant) then
  return {'not_member', redis.call('ZCARD', KEYS[2]), limit}
end

-- XX: only ever moves an existing member's expiry. '%.0f': tostring() would print a large score in
-- exponent form and lose digits.
redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now + ttl), participant)

-- As join.lua: the set must not outlive the room, so it expires with the room key; for a room object
-- without an expiry (the Room Service always sets one), the set lasts until its last heartbeat.
local room_ttl = redis.call('PTTL', KEYS[1])
if room_ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], room_ttl)
else
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], last[2])
end

return {'alive', redis.call('ZCARD', KEYS[2]), limit}
