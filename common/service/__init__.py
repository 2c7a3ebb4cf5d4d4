"""The use cases: what the API asks of rooms, the request limits, and publishing committed changes."""
