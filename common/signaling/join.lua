-- Atomic join for the Signaling service: the contract in docs/signaling.md.
--
-- KEYS[1]  room:<roomId>                  the room object the Room Service caches (JSON)
-- KEYS[2]  {room:<roomId>}:participants   sorted set: member = participant id, score = heartbeat expiry (ms)
-- KEYS[3]  {room:<roomId>}:ticket:<jti>   with a ticket: its used-mark (value: the participant admitted)
--          and, derived from KEYS[1] (the room's slot, like every key here; docs/signaling.md lists them):
--          {room:<roomId>}:joined          hash: participant id -> when it was admitted (Unix ms), which
--                                          the Room Service lists (GET /rooms/{roomId}/participants)
--          {room:<roomId>}:session         hash: the open session (startedAt, peak, pms) and emptySince
--          {room:<roomId>}:distinct        set: the open session's participants, each once
--          {room:<roomId>}:sessions        list: ended sessions the Room Service has yet to record
-- ARGV[1]  participant id (non-empty)
-- ARGV[2]  heartbeat TTL in ms (positive integer)
-- ARGV[3]  with a ticket: its jti (non-empty)
-- ARGV[4]  with a ticket: its exp (Unix seconds, positive integer)
--
-- Called with 2 keys and 2 arguments (no ticket: a caller without tickets; heartbeats are heartbeat.lua's), or with
-- 3 keys and 4 arguments (a join with a verified ticket, which admits once).
--
-- Returns {outcome, count, maxParticipants}; outcome is one of
--   admitted     the participant was added; count includes it
--   already_in   it was a live member already; its heartbeat was refreshed (a rejoin counts once)
--   full         count >= maxParticipants; nothing was added
--   not_cached   no readable room object: ask GET /rooms/{roomId} and retry once (count and limit are 0)
--   not_started  the room does not admit yet (Redis TIME < its opensAtMs): nothing was changed
--                (count 0, the room's limit)
--   removed      the room's host or a co-host removed this participant (the object's removedIds): barred
--                until the room ends, with or without a ticket; nothing was changed (count 0, the limit)
--   ticket_used  the ticket admitted someone before: nothing was changed (count and limit are 0)
-- Bad arguments give an error reply.

-- The most leeway a ticket's verifier allows past its exp (common/signaling/tickets.py): the mark
-- outlives the ticket by this much, so a ticket is never admitted twice while a verifier accepts it.
local TICKET_LEEWAY_MS = 5000

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

local with_ticket = #KEYS == 3 and #ARGV == 4
if not with_ticket and (#KEYS ~= 2 or #ARGV ~= 2) then
  return redis.error_reply(
    'ERR join takes 2 keys (room, participants) and 2 arguments (participant id, ttl ms), '
      .. 'or 3 keys (room, participants, ticket mark) and 4 arguments (participant id, ttl ms, ticket jti, ticket exp)'
  )
end
local participant = ARGV[1]
if participant == '' then
  return redis.error_reply('ERR participant id must not be empty')
end
-- Digits only: tonumber() would also accept '1e3', '0x10' and ' 5'. At most 15 digits keeps
-- now + ttl exact in a Lua number (a double).
local ttl_arg = ARGV[2]
if not string.match(ttl_arg, '^[1-9]%d*$') or #ttl_arg > 15 then
  return redis.error_reply('ERR heartbeat ttl must be a positive integer number of milliseconds')
end
local ttl = tonumber(ttl_arg)

local mark_until
if with_ticket then
  local jti = ARGV[3]
  if jti == '' then
    return redis.error_reply('ERR ticket jti must not be empty')
  end
  -- The mark is the room's, in its cluster slot: the layout is checked so a caller cannot mark elsewhere.
  if KEYS[3] ~= '{' .. KEYS[1] .. '}:ticket:' .. jti then
    return redis.error_reply('ERR ticket mark must be {' .. KEYS[1] .. '}:ticket:<jti>')
  end
  local exp_arg = ARGV[4]
  if not string.match(exp_arg, '^[1-9]%d*$') or #exp_arg > 12 then
    return redis.error_reply('ERR ticket exp must be a positive integer number of seconds')
  end
  mark_until = tonumber(exp_arg) * 1000 + TICKET_LEEWAY_MS
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return {'ticket_used', 0, 0}
  end
end

local raw = redis.call('GET', KEYS[1])
if not raw then
  return {'not_cached', 0, 0}
end
-- An unreadable value is a miss for the Room Service too: its GET /rooms/{roomId} overwrites it,
-- so answering not_cached lets the caller's retry succeed instead of failing for good.
local decoded, room = pcall(cjson.decode, raw)
if not decoded or type(room) ~= 'table' then
  return {'not_cached', 0, 0}
end
local limit = room['maxParticipants']
if type(limit) ~= 'number' or limit < 1 or limit ~= math.floor(limit) then
  return {'not_cached', 0, 0}
end
-- When joins are first admitted (Unix ms: the room's start less the early-join allowance). Objects
-- written before rooms could be scheduled have none: no restriction. Any value but an integer makes
-- an object this contract does not describe, answered as a bad maxParticipants is (not_cached):
-- taking it for absent would open a room that may not have started, and not_started would keep a
-- room shut on a value nobody can read; the caller asks the Room Service instead, which knows.
-- `% 1 ~= 0` also refuses NaN and the infinities (their `% 1` is NaN), which cjson reads from JSON.
local opens = room['opensAtMs']
if opens ~= nil and (type(opens) ~= 'number' or opens % 1 ~= 0) then
  return {'not_cached', 0, 0}
end
-- Who the room bars: few, or none (then the field is absent, and this costs one table lookup). A
-- barred participant is never admitted, and its ticket stays unused; the Room Service took it out of
-- the participant set when it wrote this object.
local removed = room['removedIds']
if type(removed) == 'table' then
  for _, id in ipairs(removed) do
    if id == participant then
      return {'removed', 0, limit}
    end
  end
end

-- Server time, so every Signaling instance judges heartbeats, and a room's opening, by the same clock.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- Before the room opens nobody is admitted, and nothing is written: no member, no used ticket, no
-- participants key that could outlive a room whose start is moved or which is ended before it.
if opens ~= nil and now < opens then
  return {'not_started', 0, limit}
end
-- '%.0f': tostring() would print a large score in exponent form and lose digits.
local expiry = string.format('%.0f', now + ttl)

settle(KEYS[1], KEYS[2], now)

local outcome
if redis.call('ZSCORE', KEYS[2], participant) then
  outcome = 'already_in'
else
  local count = redis.call('ZCARD', KEYS[2])
  if count >= limit then
    return {'full', count, limit}
  end
  if count == 0 then
    close_abandoned(KEYS[1], KEYS[2], now)
  end
  outcome = 'admitted'
end
redis.call('ZADD', KEYS[2], expiry, participant)
local count = redis.call('ZCARD', KEYS[2])
local joined = presence_key(KEYS[1], 'joined')
local session = presence_key(KEYS[1], 'session')
local distinct = presence_key(KEYS[1], 'distinct')
local begins = false
if outcome == 'admitted' then
  -- Rejoining after a lapse or a leave is joining anew (that stint was counted when it ended).
  redis.call('HSET', joined, participant, ms(now))
  local open = redis.call('HMGET', session, 'startedAt', 'peak', 'emptySince')
  if not open[1] then
    -- The join into an empty room begins a session (a room whose members a release before sessions
    -- admitted has its first session begin here too): after the last one's end, which names it apart
    -- even when a room empties and fills within one ms. It lasts at most to the room's end.
    begins = true
    local started = math.max(now, tonumber(open[3] or '0') + 1)
    redis.call('HSET', session, 'startedAt', ms(started), 'peak', count, 'pms', 0)
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then
      redis.call('HSET', session, 'endsAt', ms(now + left))
    end
  elseif count > tonumber(open[2] or 0) then
    redis.call('HSET', session, 'peak', count)
  end
  -- Exact, and as cheap as the room is small: the set ends with the session (close_session).
  redis.call('SADD', distinct, participant)
end
-- Used once it has let someone in (or refreshed a member): a refused join leaves it usable, so the
-- caller can retry after not_cached or once a slot is free. A mark already past its time (a ticket
-- that expired beyond any leeway, which no verifier accepts) is not kept.
if with_ticket and mark_until > now then
  redis.call('SET', KEYS[3], participant, 'PXAT', ms(mark_until))
end

-- What the room keeps lasts until its end, and a day past it for the sessions' sake (above). The Room
-- Service always sets the room key's expiry; for a room object without one, until the last heartbeat.
local room_ttl = redis.call('PTTL', KEYS[1])
local until_ms
if room_ttl > 0 then
  until_ms = ms(now + room_ttl + PRESENCE_GRACE_MS)
else
  until_ms = ms(tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]) + PRESENCE_GRACE_MS)
end
redis.call('PEXPIREAT', KEYS[2], until_ms)
redis.call('PEXPIREAT', joined, until_ms)
-- The session's keys are given their expiry when it begins: put_room.lua moves it with the room's end
-- from then on. A room object without an expiry has it follow the last heartbeat, so on every admission.
if begins or (outcome == 'admitted' and room_ttl <= 0) then
  redis.call('PEXPIREAT', session, until_ms)
  redis.call('PEXPIREAT', distinct, until_ms)
end

return {outcome, count, limit}
