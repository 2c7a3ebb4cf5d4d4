"""Numbered SQL migrations, applied in order by roomservice/migrate.py."""
