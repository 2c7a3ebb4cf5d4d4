"""Numbered SQL migrations, applied in order by `roomservice migrate` (see common/migrate.py)."""
