-- Leave for the Signaling service: the contract in docs/signaling.md.
--
-- KEYS[1]  room:<roomId>                  not read: the keys of the room's sessions are derived from it
-- KEYS[2]  {room:<roomId>}:participants   sorted set: member = participant id, score = heartbeat expiry (ms)
-- ARGV[1]  participant id (non-empty)
--
-- Removes the participant at once: its time in the room ends now, and so does the session if it was the
-- last one in. Returns 1 if it was a live member, else 0.

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

if #KEYS ~= 2 or #ARGV ~= 1 then
  return redis.error_reply('ERR leave takes 2 keys (room, participants) and 1 argument (participant id)')
end
local participant = ARGV[1]
if participant == '' then
  return redis.error_reply('ERR participant id must not be empty')
end

-- Lapsed members leave first (at their expiry), so a participant whose heartbeat already lapsed
-- reports 0 here as it would count as absent in join.lua.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
settle(KEYS[1], KEYS[2], now)
if not redis.call('ZSCORE', KEYS[2], participant) then
  return 0
end
depart(KEYS[1], KEYS[2], {participant, ms(now)}, 'empty')
return 1
