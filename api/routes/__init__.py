"""One module per resource: rooms, a room's history and sessions, daily statistics, health and metrics."""
