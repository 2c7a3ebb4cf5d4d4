"""What the API and the worker share: settings, the room model, queries, cache, room codes."""
