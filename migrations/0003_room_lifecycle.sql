-- Hosts list their rooms newest first, page by page: (created_at, id) is the keyset.
DROP INDEX meetings_host_id_created_at_idx;
CREATE INDEX meetings_host_id_created_at_id_idx ON meetings (host_id, created_at DESC, id DESC);

-- Idempotency-Key of POST /rooms: the same key from the same host within 24 h returns the same room.
CREATE TABLE idempotency_keys (
    host_id      uuid        NOT NULL,
    key          text        NOT NULL,
    -- What the request asked for; the same key with a different request is refused.
    request_hash text        NOT NULL,
    room_id      varchar(12) NOT NULL REFERENCES meetings (room_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- "Has this room an event still waiting to be published?", asked by every change the API makes.
CREATE INDEX room_events_unpublished_room_id_idx ON room_events (room_id) WHERE published_at IS NULL;
