"""The arq jobs, one module per family: the outbox, rooms starting and ending, the room cache, pruning."""
