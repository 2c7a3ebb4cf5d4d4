"""Background work run by arq: one module per job family."""
