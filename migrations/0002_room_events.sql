-- Room events: a transactional outbox, the history the worker records from the stream, daily aggregates.

-- Each change of a room bumps its version; events carry it so consumers can order and deduplicate.
ALTER TABLE meetings ADD COLUMN version integer NOT NULL DEFAULT 1;

-- Live rooms, for the worker's cache sweep (keyset by room_id) and its expiry pass (by expires_at).
CREATE INDEX meetings_live_room_id_idx ON meetings (room_id) WHERE is_active;
CREATE INDEX meetings_live_expires_at_idx ON meetings (expires_at) WHERE is_active;

-- The outbox: written in the same transaction as the change it describes, published to the Redis
-- stream after commit (by the API at once, or by the worker's relay when Redis was unavailable).
CREATE TABLE room_events (
    id           bigserial   PRIMARY KEY,  -- publication order
    event_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
    type         text        NOT NULL,
    room_id      varchar(12) NOT NULL,
    version      integer     NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    data         jsonb       NOT NULL,
    published_at timestamptz,
    CONSTRAINT room_events_event_id_key UNIQUE (event_id)
);
CREATE INDEX room_events_unpublished_idx ON room_events (id) WHERE published_at IS NULL;
CREATE INDEX room_events_published_at_idx ON room_events (published_at) WHERE published_at IS NOT NULL;

-- What the worker recorded from the stream; event_id makes recording idempotent.
CREATE TABLE room_history (
    event_id    uuid        PRIMARY KEY,
    room_id     varchar(12) NOT NULL,
    type        text        NOT NULL,
    version     integer     NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX room_history_room_id_idx ON room_history (room_id, occurred_at, version);

-- Daily aggregates (UTC days), maintained in the same transaction as the history rows they count.
CREATE TABLE daily_room_stats (
    day           date    PRIMARY KEY,
    rooms_created integer NOT NULL DEFAULT 0,
    rooms_ended   integer NOT NULL DEFAULT 0
);
-- Who hosted on which day: counting a host once per day needs the set, not a counter.
CREATE TABLE daily_room_hosts (
    day     date NOT NULL,
    host_id uuid NOT NULL,
    PRIMARY KEY (day, host_id)
);

-- The `data` of an event: the room object as Signaling reads it (common/events.py RoomEventData).
-- Timestamps render in the session's time zone; the service's connections use UTC.
CREATE FUNCTION room_event_data(m meetings, reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', m.id,
        'roomId', m.room_id,
        'hostId', m.host_id,
        'maxParticipants', m.max_participants,
        'createdAt', m.created_at,
        'expiresAt', m.expires_at,
        'reason', reason
    ))
$$;
