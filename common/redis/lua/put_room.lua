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
--          (the keys of the room's sessions are derived from KEYS[1], in its slot: docs/signaling.md)
--
-- Returns {written, replaced}: written 1 if the object was written, else 0; replaced the number of
-- foreign values replaced or removed (0, 1 or 2).

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
-- A moved end moves what the room keeps for its participants with it, in the same step (join.lua only
-- sets it at a join): to the end and the day past it that the sessions keep (above). A no-op for a key
-- that is not there; PEXPIREAT takes a key of any type, so nothing another writer left fails it.
local keep_until = ms(tonumber(ARGV[3]) + PRESENCE_GRACE_MS)
redis.call('PEXPIREAT', KEYS[3], keep_until)
for _, name in ipairs({'joined', 'session', 'distinct', 'sessions'}) do
  redis.call('PEXPIREAT', presence_key(KEYS[1], name), keep_until)
end
-- Its stints are counted up to the room's end, which this write may have moved. pcall, as below.
pcall(function()
  if redis.call('HEXISTS', presence_key(KEYS[1], 'session'), 'endsAt') == 1 then
    redis.call('HSET', presence_key(KEYS[1], 'session'), 'endsAt', ARGV[3])
  end
end)
-- A removed participant leaves at once, in the same step as the object that bars them is written
-- (join.lua refuses them from then on): its time in the room ends now, and the session with it if it
-- was the last one in. Nothing to do for most rooms, which bar nobody.
-- The object is written by now: bookkeeping that meets a value of another type (another writer's) at
-- a derived key fails alone (pcall); join.lua and heartbeat.lua refuse a barred member all the same.
if #ARGV > 4 and redis.call('TYPE', KEYS[3])['ok'] == 'zset' then  -- another type there is join.lua's to meet
  pcall(function()
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    settle(KEYS[1], KEYS[3], now)
    local leaving = {}
    for i = 5, #ARGV do
      if redis.call('ZSCORE', KEYS[3], ARGV[i]) then
        leaving[#leaving + 1] = ARGV[i]
        leaving[#leaving + 1] = ms(now)
      end
    end
    if #leaving > 0 then
      depart(KEYS[1], KEYS[3], leaving, 'empty')
    end
  end)
end
return {1, replaced}
