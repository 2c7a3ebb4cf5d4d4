-- The end of a room in the cache, for every end (its host's, its lifetime's, the worker's when empty or
-- unused): the ended mark, so that no writer with an older read caches it again; the room object and its
-- participants gone; the session in progress, if any, ended with the room and left for the Room
-- Service's worker to record.
--
-- KEYS[1]  room:<roomId>              the room object
-- KEYS[2]  {room:<roomId>}:ended      the ended mark
-- KEYS[3]  {room:<roomId>}:participants  Signaling's participant set (join.lua)
-- ARGV[1]  until when the mark stays (Unix ms)
-- ARGV[2]  the room's expiresAt (Unix ms)
--
-- The room stopped admitting now, or at its expiresAt if that came first (its object expired then): the
-- members still in leave at that moment, and one whose heartbeat lapsed before left at its lapse.
--
-- Returns 1. SET and DEL take a key of any type, so nothing another writer left at the room's keys can
-- fail the end; a participant set of another type is not read.

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

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ended_at = math.min(now, tonumber(ARGV[2]))
-- The sessions' bookkeeping may meet a value of another type at a derived key (another writer's): it
-- fails alone (pcall), and the end still happens below.
pcall(function()
  local kind = redis.call('TYPE', KEYS[3])['ok']
  if kind == 'zset' then
    settle(KEYS[1], KEYS[3], ended_at)
    local still = redis.call('ZRANGE', KEYS[3], 0, -1)
    if #still > 0 then
      local leaving = {}
      for _, id in ipairs(still) do
        leaving[#leaving + 1] = id
        leaving[#leaving + 1] = ms(ended_at)
      end
      depart(KEYS[1], KEYS[3], leaving, 'room_ended')
    end
  end
  if kind == 'zset' or kind == 'none' then
    close_abandoned(KEYS[1], KEYS[3], ended_at)
  end
end)
redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[1])
redis.call('DEL', KEYS[1], KEYS[3], presence_key(KEYS[1], 'joined'))
return 1
