-- Which Redis primaries the room events were last published to. A new primary (a failover promoted a
-- replica, or a server restarted) may lack what the old one acknowledged, since replication is
-- asynchronous: the outbox relay notices the change here, publishes the events of the window before
-- it again, and counts a new generation, so that a mark made for the old primaries is refused.
CREATE TABLE redis_primaries (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    identity    text        NOT NULL,  -- run_id:master_replid of every primary
    generation  bigint      NOT NULL,
    seen_at     timestamptz NOT NULL,  -- when the relay last saw these primaries
    -- Events published in [replay_from, replay_to) are yet to be made unpublished again, in batches.
    replay_from timestamptz,
    replay_to   timestamptz
);
