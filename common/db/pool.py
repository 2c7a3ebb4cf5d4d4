"""The Postgres pool, and the one place where "Postgres is unreachable" becomes `DatabaseUnavailable`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

from common.errors import DatabaseUnavailable
from common.settings import Settings, require

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

# Errors that mean "the database is not there right now", as opposed to a bug in a statement.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # e.g. the connection was closed underneath us
)


async def create_pool(
    settings: Settings, command_timeout: float | None = None, *, stateless_sessions: bool = False
) -> Pool:
    """Make the pool without waiting for Postgres: the service starts (and reports not ready) while it is down.

    `command_timeout` bounds each statement; by default the API's `db_timeout_seconds`.
    `stateless_sessions`: the users of the pool never leave session state behind (no LISTEN, SET,
    cursors or advisory locks), so a released connection needs no reset query: a round trip saved
    on every request.
    """
    # asyncpg rolls back an open transaction on release in any case; what `reset` replaces is the
    # reset query (RESET ALL, UNLISTEN *, advisory unlocks) that would follow it.
    extra: dict[str, Any] = {"reset": _keep_session} if stateless_sessions else {}
    return await asyncpg.create_pool(
        require(settings.database_url, "DATABASE_URL"),
        min_size=0,
        max_size=settings.db_pool_max_size,
        # asyncpg waits 60 s to connect and forever for a statement unless told otherwise.
        timeout=settings.db_connect_timeout_seconds,
        command_timeout=command_timeout or settings.db_timeout_seconds,
        max_inactive_connection_lifetime=300,
        # Event timestamps are rendered by Postgres (room_event_data) and days are UTC days.
        server_settings={"timezone": "UTC"},
        **extra,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo: see `create_pool(stateless_sessions=True)`."""


async def warm_up(pool: Pool, settings: Settings) -> None:
    """Open `db_pool_min_size` connections now, so the first requests do not pay for them. Best effort."""
    connections = []
    try:
        async with asyncio.timeout(settings.db_timeout_seconds):
            for _ in range(settings.db_pool_min_size):
                connections.append(await pool.acquire())
    except _UNAVAILABLE:
        pass  # not ready yet; /health/ready says so and requests answer 503 until it is
    finally:
        for conn in connections:
            await pool.release(conn)


async def close_pool(pool: Pool, settings: Settings) -> None:
    """Close gracefully if Postgres answers in time, else drop the connections."""
    try:
        async with asyncio.timeout(settings.db_timeout_seconds):
            await pool.close()
    except TimeoutError:
        pool.terminate()


def deleted_count(status: str) -> int:
    """The row count of a command status such as `DELETE 42` or `UPDATE 7`."""
    return int(status.rsplit(maxsplit=1)[-1])


@asynccontextmanager
async def connection(pool: Pool, timeout: float, *, whole: bool = True) -> AsyncIterator[Connection]:
    """A pooled connection for one unit of work. Raises `DatabaseUnavailable` when Postgres cannot be
    reached or answers too slowly.

    With `whole` (the default) `timeout` bounds all of it, acquiring included: what a request needs.
    Without, it bounds the acquiring, and each statement is bounded by the pool's command timeout:
    what a long batch job needs.
    """
    try:
        async with asyncio.timeout(timeout if whole else None):
            # Under `whole` the block's own bound covers the acquiring: asyncpg would spend a task
            # on a bound of its own (asyncio.wait_for) for every request.
            conn = await (pool.acquire() if whole else pool.acquire(timeout=timeout))
            try:
                yield conn
            except (asyncio.CancelledError, *_UNAVAILABLE):
                # Cut off mid-statement, its state is unknown: close it rather than hand it to the
                # next user (a graceful release would wait on a server that may not answer).
                conn.terminate()
                raise
            finally:
                await pool.release(conn)
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
