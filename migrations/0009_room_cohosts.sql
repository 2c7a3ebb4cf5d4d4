-- Co-hosts: up to 10 users the host names, who may change the room's limit and metadata and end it
-- (the API decides who may do what; see README "Who may do what"). Empty for a room without any.
-- A column with a constant default is added without rewriting the table (Postgres 11 and later), so the
-- lock this file takes (ACCESS EXCLUSIVE, until it commits) lasts milliseconds. The index of the
-- column is built by the next file, in a transaction of its own, under a lighter lock.
ALTER TABLE meetings ADD COLUMN cohost_ids uuid[] NOT NULL DEFAULT '{}';
-- At most 10, none NULL, and never the host. NOT VALID, as in 0008: every existing row holds the empty
-- default, which the check accepts, and checking them would scan the table under the lock that stops
-- its queries.
ALTER TABLE meetings ADD CONSTRAINT meetings_cohost_ids_valid CHECK (
    cardinality(cohost_ids) <= 10
    AND array_position(cohost_ids, NULL) IS NULL
    AND array_position(cohost_ids, host_id) IS NULL
) NOT VALID;

-- The event `data` names the co-hosts as `cohostIds`, only when there are some: a room without co-hosts
-- has no such key, as the room object in Redis has none (common/rooms/model.py Room omits it).
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
        'reason', reason,
        'cohostIds', CASE WHEN cardinality(m.cohost_ids) > 0 THEN to_jsonb(m.cohost_ids) END
    )) || CASE WHEN m.metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', m.metadata) END
$$;
