-- The worker's presence check of one room (worker/jobs/presence.py), every ROOMS_PRESENCE_CHECK_SECONDS:
-- members whose heartbeat lapsed leave (at their lapse); the room's sessions are read for the Room
-- Service to record; and a room empty or unused for its timeout ends here, in the same step as the
-- check, so that no join can slip in between: a join before it keeps the room, and after it the room is
-- gone (join.lua answers not_cached, and the Room Service 410 once the worker has ended it in Postgres).
--
-- KEYS[1]  room:<roomId>                  the room object
-- KEYS[2]  {room:<roomId>}:ended          the ended mark
-- KEYS[3]  {room:<roomId>}:participants   Signaling's participant set
-- ARGV[1]  the room's start (Unix ms); 0 for a room that has ended (nothing is decided, only read)
-- ARGV[2]  its empty timeout (ms, 0 never), ARGV[3] its unused timeout (ms, 0 never): the database's,
--          for an object without emptyTimeoutSeconds / unusedTimeoutSeconds (the object's are newer)
-- ARGV[4]  when its last session ended, as far as the database knows (Unix ms; 0 for none): a room
--          whose Redis lost its sessions was still used
--
-- Returns {verdict, now, emptySince, open startedAt, open peak, open distinct, open participant-ms,
-- then each ended session not yet recorded ('startedAt endedAt peak distinct participantMs reason')}:
--   verdict   live | empty | unused (ended now, at `now`) | ending <reason> <ms> (ended by an earlier
--             check whose end the database may not have: the mark says) | absent (no room object)
--   emptySince  when its last session ended (0: none that Redis knows)
--   the open session's fields are 0 when none is open; its participant-ms counts the members in it
--   up to now

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
local kind = redis.call('TYPE', KEYS[3])['ok']
if kind == 'zset' then
  settle(KEYS[1], KEYS[3], now)
end
if kind == 'zset' or kind == 'none' then
  close_abandoned(KEYS[1], KEYS[3], now)
end

local function state(verdict)
  local session = presence_key(KEYS[1], 'session')
  local open = redis.call('HMGET', session, 'startedAt', 'peak', 'pms', 'emptySince')
  local reply = {verdict, ms(now), open[4] or '0', open[1] or '0', open[2] or '0', '0', '0'}
  if open[1] then
    reply[6] = tostring(redis.call('SCARD', presence_key(KEYS[1], 'distinct')))
    local total = tonumber(open[3] or '0')
    local members = redis.call('ZRANGE', KEYS[3], 0, -1)
    if #members > 0 then
      for _, from in ipairs(redis.call('HMGET', presence_key(KEYS[1], 'joined'), unpack(members))) do
        if from and now > tonumber(from) then
          total = total + (now - tonumber(from))
        end
      end
    end
    reply[7] = ms(total)
  end
  for _, record in ipairs(redis.call('LRANGE', presence_key(KEYS[1], 'sessions'), 0, -1)) do
    reply[#reply + 1] = record
  end
  return reply
end

local raw = redis.call('GET', KEYS[1])
if not raw then
  local mark = redis.call('GET', KEYS[2])
  if mark and string.sub(mark, 1, 6) == 'ending' then
    return state(mark)
  end
  return state('absent')
end
local start = tonumber(ARGV[1])
if start == 0 or redis.call('ZCARD', KEYS[3]) > 0 then
  return state('live')
end
local readable, room = pcall(cjson.decode, raw)
if not readable or type(room) ~= 'table' then
  room = {}
end
local function timeout(field, fallback)
  local seconds = room[field]
  if type(seconds) == 'number' and seconds >= 0 and seconds % 1 == 0 then
    return seconds * 1000
  end
  return tonumber(fallback)
end
local emptied = math.max(tonumber(redis.call('HGET', presence_key(KEYS[1], 'session'), 'emptySince') or '0'),
  tonumber(ARGV[4]))
local verdict, limit, since
if emptied > start then
  -- Empty since its last participant left. Those who came early and left before its start do not
  -- make it used: nobody joined since it started.
  verdict, limit, since = 'empty', timeout('emptyTimeoutSeconds', ARGV[2]), emptied
else
  verdict, limit, since = 'unused', timeout('unusedTimeoutSeconds', ARGV[3]), start
end
if limit == 0 or now < since + limit then
  return state('live')
end
-- The end, in Redis: as end_room.lua's, but the mark says why and when, until the database has it.
local mark_ttl = math.max(redis.call('PTTL', KEYS[1]), 1000)
redis.call('SET', KEYS[2], 'ending ' .. verdict .. ' ' .. ms(now), 'PX', mark_ttl)
redis.call('DEL', KEYS[1], KEYS[3], presence_key(KEYS[1], 'joined'))
return state(verdict)
