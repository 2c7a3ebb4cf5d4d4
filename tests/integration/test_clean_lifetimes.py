"""A start that fails or is cancelled half-way, and a stop whose first steps fail, still close the
Postgres pool and the Redis clients that were made."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support.processes import environment
from tests.support.waiting import eventually


@pytest.mark.one_topology
async def test_an_api_stop_whose_metrics_cannot_be_written_still_closes_the_pool(
    scratch_database: str, redis_url: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **environment(database_url=scratch_database, redis_url=redis_url, db_pool_min_size="2"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.stop_without_metrics_files",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            said = (await process.stdout.readline()).decode()
        # The request's figures had no file to go to: the stop's last flush failed, for a real reason.
        assert said.startswith("stop failed:"), said
        assert "No such file or directory" in said, said
        conn = await asyncpg.connect(scratch_database, timeout=10)
        try:

            async def pool_closed() -> bool:
                others = "datname = current_database() AND pid <> pg_backend_pid()"
                count = await conn.fetchval(f"SELECT count(*) FROM pg_stat_activity WHERE {others}")
                return count == 0

            await eventually(pool_closed, 10, "the API's pool closes its warm connections although a step failed")
        finally:
            await conn.close()
    finally:
        process.stdin.write(b"done\n")
        await process.stdin.drain()
        async with asyncio.timeout(20):
            await process.wait()
