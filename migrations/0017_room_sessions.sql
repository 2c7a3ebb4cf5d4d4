-- Sessions: the spans in which a room had at least one participant. Signaling's scripts keep them in
-- Redis, exactly and in the room's slot (common/signaling/join.lua); the worker's presence pass
-- (worker/jobs/presence.py) records them here and announces them (`session.started`, `session.ended`).
--
-- A session is named by its room and the moment it began (ms, from Redis TIME): join.lua begins a
-- session after the last one's end, even when the room empties and fills within one ms, so no two of a
-- room begin at the same moment, and a pass that records one twice changes nothing.
CREATE TABLE room_sessions (
    meeting_id            uuid        NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    started_at            timestamptz NOT NULL,
    ended_at              timestamptz,  -- NULL while in progress
    peak_participants     integer     NOT NULL,
    distinct_participants integer     NOT NULL,
    -- Time in the room summed over participants, in ms; of a session in progress, up to seen_at.
    participant_ms        bigint      NOT NULL,
    -- empty: its last participant left; room_ended: the room ended with people in it; lost: Redis
    -- lost what it kept (a restart without its data), and it ended at the last moment known, seen_at.
    end_reason            text CHECK (end_reason IN ('empty', 'room_ended', 'lost')),
    -- The last moment the pass recorded it in progress (at most a minute before the last pass that saw
    -- it: common/db/sessions.py), or its end, once ended.
    seen_at               timestamptz NOT NULL,
    PRIMARY KEY (meeting_id, started_at),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);

-- Up to when the pass has recorded the sessions of ended rooms: it visits the rooms whose room.ended
-- was published since (room_events_published_at_idx), as the end is what closes a session in Redis.
CREATE TABLE presence_progress (
    one             boolean     PRIMARY KEY DEFAULT true CHECK (one),
    ended_published timestamptz NOT NULL
);
INSERT INTO presence_progress (ended_published) VALUES (now());

-- Sessions and participant-seconds that ended on each UTC day (worker/history.py counts session.ended).
ALTER TABLE daily_room_stats ADD COLUMN sessions integer NOT NULL DEFAULT 0;
ALTER TABLE daily_room_stats ADD COLUMN participant_seconds numeric(18, 3) NOT NULL DEFAULT 0;  -- to the ms

-- What `session.started` and `session.ended` carry beside the room object, under `session`
-- (docs/events.md): times as instants, lengths in seconds (to the ms). `session.started` has the
-- figures of its first moment, whenever the pass first saw it: one participant, nobody's time yet.
-- STABLE: a timestamptz in JSON is written in the session's time zone.
CREATE FUNCTION session_event_data(s room_sessions, ended boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN ended THEN jsonb_strip_nulls(jsonb_build_object(
        'startedAt', s.started_at,
        'endedAt', s.ended_at,
        'durationSeconds', round(extract(epoch FROM s.ended_at - s.started_at), 3),
        'peakParticipants', s.peak_participants,
        'distinctParticipants', s.distinct_participants,
        'participantSeconds', round(s.participant_ms / 1000.0, 3),
        'endReason', s.end_reason
    )) ELSE jsonb_build_object(
        'startedAt', s.started_at,
        'peakParticipants', 1,
        'distinctParticipants', 1,
        'participantSeconds', 0
    ) END
$$;
