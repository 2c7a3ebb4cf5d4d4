-- Rooms on the calendar: a room may be booked to start later (`scheduled` until then) and end when its
-- host chooses, within bounds the API enforces (ROOMS_MAX_SCHEDULE_DAYS, ROOMS_MAX_ROOM_SECONDS).
--
-- Nothing here rewrites `meetings` or reads it: a nullable column without a default, a column with a
-- constant default and a NOT VALID check are catalogue changes. The ACCESS EXCLUSIVE lock this file
-- takes (every query of the table waits) is held until it commits: milliseconds (docs/operations.md has
-- the figure measured on 1,000,000 rooms). The index is the next file's, under a lighter lock.

-- When the room opens. NULL in the rows from before, which started at their creation: readers take
-- coalesce(starts_at, created_at) (common/db/room_rows.py). Filling them in would write every row.
ALTER TABLE meetings ADD COLUMN starts_at timestamptz;

-- Whether the room has started: at its creation (every row from before, and a room created without a
-- later start), or when the worker announced it with `room.started` (worker/jobs/lifecycle.py). Only
-- a room booked ahead is created false.
ALTER TABLE meetings ADD COLUMN started boolean NOT NULL DEFAULT true;

-- A room ends after it starts. NOT VALID: the existing rows have no start of their own (NULL passes).
ALTER TABLE meetings ADD CONSTRAINT meetings_starts_before_expiry CHECK (starts_at < expires_at) NOT VALID;

-- The event `data` and the room object carry the start (`startsAt`), for every room.
CREATE OR REPLACE FUNCTION room_event_data(m meetings, reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', m.id,
        'roomId', m.room_id,
        'hostId', m.host_id,
        'maxParticipants', m.max_participants,
        'createdAt', m.created_at,
        'startsAt', coalesce(m.starts_at, m.created_at),
        'expiresAt', m.expires_at,
        'version', m.version,
        'reason', reason,
        'cohostIds', CASE WHEN cardinality(m.cohost_ids) > 0 THEN to_jsonb(m.cohost_ids) END
    )) || CASE WHEN m.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', m.metadata) END
$$;

-- Rooms that started on each UTC day: booked ones on the day of their start, the others on the day
-- they were created (worker/history.py). A constant default: no rewrite.
ALTER TABLE daily_room_stats ADD COLUMN rooms_started integer NOT NULL DEFAULT 0;
