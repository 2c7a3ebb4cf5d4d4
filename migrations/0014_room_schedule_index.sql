-- The rooms waiting for their start, for the worker's start job (a query every second). Partial, so it
-- holds only rooms booked ahead that have not started yet: creating a room that opens at once writes
-- nothing here. In a file of its own, as 0010: built under 0013's ACCESS EXCLUSIVE it would stop reads
-- for as long as it reads the table; alone it holds SHARE, under which reads go on and only creates
-- and changes wait (docs/operations.md has the figure for 1,000,000 rooms).
CREATE INDEX meetings_waiting_start_idx ON meetings (starts_at) WHERE is_active AND NOT started;
