-- Meetings: the source of truth for whether a room exists and who may join it.
CREATE TABLE meetings (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The public code, `abc-defg-hij`. SQL is snake_case; JSON calls it `roomId`.
    room_id          varchar(12) NOT NULL,
    -- Users live in the identity service, in another database: no foreign key can cross that line,
    -- so the gateway-authenticated id is stored as given.
    host_id          uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Soft delete: an ended room keeps its row for history.
    is_active        boolean     NOT NULL DEFAULT true,
    max_participants integer     NOT NULL DEFAULT 4,
    -- created_at + the room lifetime (ROOMS_ROOM_TTL_SECONDS): meetings are ephemeral.
    expires_at       timestamptz NOT NULL,
    CONSTRAINT meetings_room_id_key UNIQUE (room_id),
    CONSTRAINT meetings_room_id_format CHECK (room_id ~ '^[a-z]{3}-[a-z]{4}-[a-z]{3}$'),
    CONSTRAINT meetings_max_participants_range CHECK (max_participants BETWEEN 2 AND 1000),
    CONSTRAINT meetings_expires_after_creation CHECK (expires_at > created_at)
);

-- A host's rooms, newest first.
CREATE INDEX meetings_host_id_created_at_idx ON meetings (host_id, created_at DESC);
