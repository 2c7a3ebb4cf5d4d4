"""Redis: the bounded, breaker-guarded client, the key contract, room objects, the event stream, counters."""
