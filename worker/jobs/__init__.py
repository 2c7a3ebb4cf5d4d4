"""The arq jobs, one module per family: the outbox, room expiry, the room cache."""
