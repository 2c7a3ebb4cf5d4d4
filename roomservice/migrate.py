"""Applies the numbered SQL files in `migrations/`, each once, in order, in its own transaction.

Safe to run concurrently (a Postgres advisory lock serialises runners) and repeatedly (applied files
are recorded). An applied file that was edited since is refused: the database would no longer match
what the file says, and the fix is a new migration.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from importlib import resources
from typing import NamedTuple

import asyncpg
import msgspec

log = logging.getLogger(__name__)

# Any constant shared by every runner of this service; chosen to be unlikely to clash with others.
_LOCK_KEY = 0x526F6F6D  # "Room"
# How long a runner waits for another one to finish before giving up.
_RUNNER_WAIT = "60s"
# How long a migration statement waits for a table lock: briefly, so that a migration stuck behind
# long transactions fails rather than queueing the service's own queries behind it.
_STATEMENT_LOCK_WAIT = "5s"

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    pass


class Migration(msgspec.Struct, frozen=True):
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The `NNNN_name.sql` files shipped in the `migrations` package, in order."""
    files = resources.files("migrations")
    found = [
        Migration(name=entry.name, sql=entry.read_text(encoding="utf-8"))
        for entry in files.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.name)


async def migrate(dsn: str, migrations: list[Migration] | None = None, connect_timeout: float = 10) -> list[str]:
    """Apply what is pending; return the names applied by this call (empty when up to date)."""
    pending_source = available_migrations() if migrations is None else migrations
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        await conn.execute(f"SET lock_timeout = '{_RUNNER_WAIT}'")
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(f"SET lock_timeout = '{_STATEMENT_LOCK_WAIT}'")
        try:
            return await _apply_pending(conn, pending_source)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


class MigrationState(NamedTuple):
    """A migration of this version as the database knows it."""

    name: str
    applied_at: datetime | None  # None: pending
    edited: bool  # applied, but the file has changed since (`migrate` refuses to run)


async def migration_status(
    dsn: str, migrations: list[Migration] | None = None, connect_timeout: float = 10
) -> list[MigrationState]:
    """Each migration of this version, applied or pending. Reads only: takes no lock, creates nothing."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        ledger = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        rows = await conn.fetch("SELECT name, checksum, applied_at FROM schema_migrations") if ledger else []
    finally:
        await conn.close()
    applied = {row["name"]: row for row in rows}
    return [
        MigrationState(
            migration.name,
            applied[migration.name]["applied_at"] if migration.name in applied else None,
            migration.name in applied and applied[migration.name]["checksum"] != migration.checksum,
        )
        for migration in (available_migrations() if migrations is None else migrations)
    ]


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(_LEDGER)
    applied = {row["name"]: row["checksum"] for row in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
    for migration in migrations:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"{migration.name} was edited after it was applied; restore it and add a new migration instead"
            )
    unknown = sorted(set(applied) - {m.name for m in migrations})
    if unknown:
        log.warning("the database has migrations this version does not know: %s", ", ".join(unknown))

    done: list[str] = []
    for migration in migrations:
        if migration.name in applied:
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", migration.name, migration.checksum
            )
        log.info("applied migration %s", migration.name)
        done.append(migration.name)
    return done
