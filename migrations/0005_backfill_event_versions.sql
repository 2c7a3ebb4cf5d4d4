-- Events written before 0004 carry no `version` in their data; the room object now requires it.
UPDATE room_events SET data = data || jsonb_build_object('version', version) WHERE NOT data ? 'version';
UPDATE room_history SET data = data || jsonb_build_object('version', version) WHERE NOT data ? 'version';
