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

-- presence: begin. The same text in join.lua, heartbeat.lua, leave.lua, put_room.lua, end_room.lua and
-- presence.lua (each is loaded on its own): the room's sessions, kept exactly, in the room's slot. A
-- session is a span with at least one participant; docs/signaling.md, "Sessions", lists the keys.
-- What a room keeps outlives its end by a day, for the Room Service's worker to record (it deletes it
-- then): a room whose object simply expired still has every stint to count.
local PRESENCE_GRACE_MS = 86400000
local function presence_key(room, name)
  return '{' .. room .. '}:' .. name
end
local function ms(value)
  return string.format('%.0f', value)  -- tostring() would print a large number in exponent form
end
-- The open session ends at `ended_at` (never before it began): onto the list of sessions the Room
-- Service has yet to record, as 'startedAt endedAt peak distinct participantMs reason'.
local function close_session(room, ended_at, reason)
  local session = presence_key(room, 'session')
  local open = redis.call('HMGET', session, 'startedAt', 'peak', 'pms')
  if not open[1] then
    return
  end
  ended_at = math.max(ended_at, tonumber(open[1]))
  local distinct = presence_key(room, 'distinct')
  local sessions = presence_key(room, 'sessions')
  local record = table.concat(
    {open[1], ms(ended_at), open[2] or '0', redis.call('SCARD', distinct), open[3] or '0', reason}, ' ')
  redis.call('RPUSH', sessions, record)
  local ttl = redis.call('PTTL', session)
  if ttl > 0 then
    redis.call('PEXPIRE', sessions, ttl)
  end
  -- emptySince first: the hash keeps a field, and so its expiry.
  redis.call('HSET', session, 'emptySince', ms(ended_at))
  redis.call('HDEL', session, 'startedAt', 'peak', 'pms')
  redis.call('DEL', distinct)
end
-- Members leave, each at its moment (`leaving`: id, moment, id, moment, ...), but never after the room's
-- end (`endsAt`: one who leaves, or lapses, after the room key expired and before its end was applied
-- was in the room until its end) nor before it joined: each stint's time joins the session's
-- participant-ms; if none is left, the session ends at the last moment, with `reason`, or `room_ended`
-- if that was the room's end.
local function depart(room, participants, leaving, reason)
  local session = presence_key(room, 'session')
  local joined = presence_key(room, 'joined')
  local ids, last, total = {}, 0, 0
  for i = 1, #leaving, 2 do
    ids[#ids + 1] = leaving[i]
  end
  local since = redis.call('HMGET', joined, unpack(ids))
  local ends = tonumber(redis.call('HGET', session, 'endsAt') or '')
  for i = 1, #ids do
    local at, from = tonumber(leaving[2 * i]), tonumber(since[i])
    if ends and at > ends then
      at = ends
    end
    if from and at > from then
      total = total + (at - from)
    end
    if at > last then
      last = at
    end
  end
  redis.call('ZREM', participants, unpack(ids))
  redis.call('HDEL', joined, unpack(ids))
  if total > 0 and redis.call('HEXISTS', session, 'startedAt') == 1 then
    redis.call('HINCRBY', session, 'pms', ms(total))
  end
  if redis.call('ZCARD', participants) == 0 then
    close_session(room, last, (ends and last == ends) and 'room_ended' or reason)
  end
end
-- Members whose heartbeat lapsed (score <= now) left when it lapsed, not when this noticed.
local function settle(room, participants, now)
  local lapsed = redis.call('ZRANGEBYSCORE', participants, '-inf', now, 'WITHSCORES')
  if #lapsed > 0 then
    depart(room, participants, lapsed, 'empty')
  end
end
-- A session open in a room with nobody in it: its members were taken out by a script that keeps no
-- sessions (a release before them, during a rolling upgrade) or by a script that failed half-way. When
-- they left is not known: it ends `lost`, now.
local function close_abandoned(room, participants, now)
  if redis.call('ZCARD', participants) == 0 then
    close_session(room, now, 'lost')
  end
end
-- presence: end

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

-- As join.lua does: members whose heartbeat lapsed (score <= now) left when it lapsed, this one included.
settle(KEYS[1], KEYS[2], now)
local member = redis.call('ZSCORE', KEYS[2], participant)
if barred and member then
  depart(KEYS[1], KEYS[2], {participant, ms(now)}, 'empty')
end
if barred or not member then
  return {'not_member', redis.call('ZCARD', KEYS[2]), limit}
end

-- XX: only ever moves an existing member's expiry. '%.0f': tostring() would print a large score in
-- exponent form and lose digits.
redis.call('ZADD', KEYS[2], 'XX', ms(now + ttl), participant)

-- As join.lua: what the room keeps lasts until its end and a day past it, for its sessions' sake; for a
-- room object without an expiry (the Room Service always sets one), until the last heartbeat.
local room_ttl = redis.call('PTTL', KEYS[1])
local until_ms
if room_ttl > 0 then
  until_ms = ms(now + room_ttl + PRESENCE_GRACE_MS)
else
  until_ms = ms(tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]) + PRESENCE_GRACE_MS)
end
redis.call('PEXPIREAT', KEYS[2], until_ms)

return {'alive', redis.call('ZCARD', KEYS[2]), limit}
