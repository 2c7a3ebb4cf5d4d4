"""Scratch servers for the self-contained benchmarks: embedded Postgres and Valkey in a temporary
directory, migrated, removed afterwards. Nothing else on the machine is touched.

SIGTERM is turned into a normal exit, so the servers stop even when the bench is killed politely.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from common.settings import Settings  # noqa: E402
from roomservice.embedded import embedded_postgres, embedded_redis, ensure_database  # noqa: E402
from roomservice.migrate import migrate  # noqa: E402


@contextmanager
def scratch_servers(**overrides: object) -> Iterator[Settings]:
    """Settings pointing at fresh, migrated servers; `overrides` are further Settings fields."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="roomservice-bench-") as scratch:
        data = Path(scratch)
        with (
            embedded_postgres(data / "postgres", persist=False) as server,
            embedded_redis(data / "valkey", persist=False) as redis_url,
        ):
            database_url = asyncio.run(ensure_database(server, "bench"))
            asyncio.run(migrate(database_url))
            yield Settings(database_url=database_url, redis_url=redis_url, **overrides)  # type: ignore[arg-type]
