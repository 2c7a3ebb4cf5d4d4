"""What the API and the worker share, by layer: `rooms` (the domain, no I/O), `db` and `redis` (one store
each), `signaling` (Signaling's join contract) and `service` (the use cases, over both stores)."""
