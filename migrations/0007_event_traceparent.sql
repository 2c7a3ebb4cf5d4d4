-- The W3C traceparent of the request (or job) that caused an event, carried on its stream entry so
-- that a consumer can continue the trace. NULL while tracing is off; existing rows keep NULL (adding
-- a nullable column without a default rewrites nothing).
ALTER TABLE room_events ADD COLUMN traceparent text;
