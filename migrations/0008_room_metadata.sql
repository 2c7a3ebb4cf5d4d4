-- Room metadata: a JSON object the host sets on create and replaces with PATCH (NULL: none). The API
-- bounds its size (ROOMS_METADATA_MAX_BYTES) and refuses anything but an object; the check keeps any
-- other writer to objects too. Adding a nullable column without a default rewrites nothing.
ALTER TABLE meetings ADD COLUMN metadata jsonb;
-- NOT VALID: checking the existing rows would scan the whole table while holding the lock that stops
-- every query of it, and there is nothing to check: the column is new, NULL in every row, which the
-- check accepts. Every row written from now on is checked.
ALTER TABLE meetings ADD CONSTRAINT meetings_metadata_object CHECK (jsonb_typeof(metadata) = 'object') NOT VALID;

-- The event `data` carries the metadata, added after jsonb_strip_nulls: stripping would also remove
-- the nulls inside it, which are the host's values. A room without metadata has no `metadata` key,
-- as the room object in Redis has none (common/rooms/model.py Room omits it).
CREATE OR REPLACE FUNCTION room_event_data(m meetings, reason text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', m.id,
        'roomId', m.room_id,
        'hostId', m.host_id,
        'maxParticipants', m.max_participants,
        'createdAt', m.created_at,
        'expiresAt', m.expires_at,
        'version', m.version,
        'reason', reason
    )) || CASE WHEN m.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', m.metadata) END
$$;
