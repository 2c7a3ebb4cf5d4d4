-- The room object carries its version, so that a cache writer holding an older read of a room can
-- tell (common/lua/put_room.lua) and leave the newer object in place.
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
    ))
$$;
