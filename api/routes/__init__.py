"""One module per resource: rooms, a room's history, daily statistics, health and metrics."""
