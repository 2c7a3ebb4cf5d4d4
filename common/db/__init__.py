"""Postgres: the pool, and one module of statements per table family (rooms, outbox, idempotency, history)."""
