"""Join tickets: what a ticket says (claims.py), and the keys that sign it and are published (keys.py)."""
