-- Removed participants: the ids a room's host or a co-host removed, barred from the room until it ends.
-- They travel in the room object (`removedIds`), where join.lua reads them: so a bar needs no key of
-- its own in Redis, and survives Redis losing its data, as the object is rebuilt from here.
--
-- A column with a constant default and a NOT VALID check: no rewrite, no scan (as 0009). Every row
-- holds the empty default, which the check accepts.
ALTER TABLE meetings ADD COLUMN removed_ids text[] NOT NULL DEFAULT '{}';
-- At most 1000 (the most participants a room may have), none NULL or empty.
ALTER TABLE meetings ADD CONSTRAINT meetings_removed_ids_valid CHECK (
    cardinality(removed_ids) <= 1000
    AND array_position(removed_ids, NULL) IS NULL
    AND array_position(removed_ids, '') IS NULL
) NOT VALID;

-- The object and the events' data carry `removedIds` when there are some, as `cohostIds`. The event of
-- a removal (`participant.removed`) names whom, `participantId`, by a third argument. Dropped first: a
-- function with another list of arguments is another function, and two would make every call that
-- leaves out the last ones ambiguous. In this file's transaction, so no statement finds it missing.
DROP FUNCTION room_event_data(meetings, text);
CREATE FUNCTION room_event_data(m meetings, reason text DEFAULT NULL, participant text DEFAULT NULL)
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
        'reason', reason,
        'participantId', participant,
        'cohostIds', CASE WHEN cardinality(m.cohost_ids) > 0 THEN to_jsonb(m.cohost_ids) END,
        'removedIds', CASE WHEN cardinality(m.removed_ids) > 0 THEN to_jsonb(m.removed_ids) END
    )) || CASE WHEN m.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', m.metadata) END
$$;
