-- Leave for the Signaling service: the contract in docs/signaling.md.
--
-- KEYS[1]  room:<roomId>                  declared for the same layout as join.lua; not read
-- KEYS[2]  {room:<roomId>}:participants   sorted set: member = participant id, score = heartbeat expiry (ms)
-- ARGV[1]  participant id (non-empty)
--
-- Removes the participant at once. Returns 1 if it was a live member, else 0.

if #KEYS ~= 2 or #ARGV ~= 1 then
  return redis.error_reply('ERR leave takes 2 keys (room, participants) and 1 argument (participant id)')
end
local participant = ARGV[1]
if participant == '' then
  return redis.error_reply('ERR participant id must not be empty')
end

-- Drop expired members first, so a participant whose heartbeat already lapsed reports 0 here as
-- it would count as absent in join.lua.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)

return redis.call('ZREM', KEYS[2], participant)
