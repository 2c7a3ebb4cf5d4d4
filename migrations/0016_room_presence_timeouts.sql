-- Rooms that end by themselves when nobody uses them: a room that has stayed empty for
-- `empty_timeout_seconds` after its last participant left, or that nobody joined within
-- `unused_timeout_seconds` of its start, is ended by the worker (`room.ended` with reason `empty` or
-- `unused`). 0 is never.
--
-- The rows from before get 0, never: a room made under the earlier contract was promised to last until
-- its expiresAt or its host's end, and must not start ending because the service was upgraded. The
-- column's default is 0 rather than the deployment's for the same reason: during a rolling upgrade an
-- API process of the earlier release still creates rooms naming neither column, under the old
-- contract. The service of this release writes both on every create, the request's values or
-- ROOMS_EMPTY_TIMEOUT_SECONDS and ROOMS_UNUSED_TIMEOUT_SECONDS.
--
-- Columns with a constant default and NOT VALID checks: no rewrite, no scan (as 0009 and 0015). Every
-- row holds the default, which the checks accept.
ALTER TABLE meetings ADD COLUMN empty_timeout_seconds integer NOT NULL DEFAULT 0;
ALTER TABLE meetings ADD COLUMN unused_timeout_seconds integer NOT NULL DEFAULT 0;
-- At most a day (MAX_PRESENCE_TIMEOUT_SECONDS, common/settings/room_policy.py).
ALTER TABLE meetings ADD CONSTRAINT meetings_empty_timeout_seconds_valid
    CHECK (empty_timeout_seconds BETWEEN 0 AND 86400) NOT VALID;
ALTER TABLE meetings ADD CONSTRAINT meetings_unused_timeout_seconds_valid
    CHECK (unused_timeout_seconds BETWEEN 0 AND 86400) NOT VALID;

-- The object and the events' data carry both, always, as integers (0 too: a reader needs no default of
-- its own, and an object without them was written by an earlier release, whose rooms never end so).
-- The arguments are 0015's: replaced in place, the same function, so no statement finds it missing.
CREATE OR REPLACE FUNCTION room_event_data(m meetings, reason text DEFAULT NULL, participant text DEFAULT NULL)
RETURNS jsonb
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
        'emptyTimeoutSeconds', m.empty_timeout_seconds,
        'unusedTimeoutSeconds', m.unused_timeout_seconds,
        'reason', reason,
        'participantId', participant,
        'cohostIds', CASE WHEN cardinality(m.cohost_ids) > 0 THEN to_jsonb(m.cohost_ids) END,
        'removedIds', CASE WHEN cardinality(m.removed_ids) > 0 THEN to_jsonb(m.removed_ids) END
    )) || CASE WHEN m.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', m.metadata) END
$$;
