-- Retention (worker/jobs/prune.py): ended rooms past ROOMS_RETENTION_DAYS leave `meetings` with their
-- history, outbox events and Idempotency-Keys; the daily statistics stay.

-- Deleting a room checks the foreign key of idempotency_keys, which without an index on room_id reads
-- the whole key table for every room. First in this file: the create statement locks idempotency_keys
-- before meetings, and a migration taking them the other way round deadlocks with it (bench/prune_bench.py
-- met it: one of the two is aborted).
CREATE INDEX IF NOT EXISTS idempotency_keys_room_id_idx ON idempotency_keys (room_id);

-- The codes of pruned rooms, so that none is ever handed out again: someone who kept an old code must
-- not find a stranger's room behind it. 26^10 codes are many, but not enough to rule a clash out at
-- scale (docs/scaling.md has the arithmetic). The code alone: about 85 bytes a room with its index.
CREATE TABLE retired_room_codes (
    room_id varchar(12) PRIMARY KEY
);

-- A new room with a retired code is refused as if the code were taken, with the error the create path
-- already draws another code on (common/service/inserts.py). AFTER the insert, once per statement:
-- the insert has by then waited out a pruning transaction deleting a room of the same code, so this
-- query (a fresh snapshot, READ COMMITTED) sees the code that transaction retired.
CREATE FUNCTION refuse_retired_room_codes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted JOIN retired_room_codes USING (room_id)) THEN
        RAISE EXCEPTION 'room code is retired'
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'meetings_room_id_key';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER meetings_refuse_retired_codes AFTER INSERT ON meetings
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION refuse_retired_room_codes();

-- The pruning walks ended rooms by expires_at (no room ends after it expires). Partial: rooms are
-- created active, so creating a room writes nothing here. Each index build holds SHARE on its table
-- (reads go on, writes wait) for as long as docs/scaling.md measured. IF NOT EXISTS: an operator may
-- build both beforehand with CREATE INDEX CONCURRENTLY under these names (docs/operations.md), and
-- then nothing waits.
CREATE INDEX IF NOT EXISTS meetings_ended_expires_at_idx ON meetings (expires_at) WHERE NOT is_active;
