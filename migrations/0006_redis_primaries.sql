-- Which Redis primaries the room events were last published to. A new primary (a failover promoted a
-- replica, or a server restarted) may lack what the old one acknowledged, since replication is
-- asynchronous: the outbox relay notices the change here, publishes the recent events again, and
-- counts a new generation, so that a mark made for the old primary is not taken for the new one.
CREATE TABLE redis_primaries (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    run_ids    text        NOT NULL,
    generation bigint      NOT NULL,
    seen_at    timestamptz NOT NULL
);

-- The generation under which events are published now; 0 before the relay has first looked.
CREATE FUNCTION redis_generation() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT generation FROM redis_primaries), 0)
$$;
