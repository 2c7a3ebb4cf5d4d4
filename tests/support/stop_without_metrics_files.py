"""Run by tests/integration/test_clean_lifetimes.py in a process of its own, since prometheus_client
keeps its values in files only when PROMETHEUS_MULTIPROC_DIR is set before it is imported.

Starts the API (ROOMS_* environment), removes the metrics directory under it, answers one request
(whose figures now have no file to go to), and stops it. Prints `stop failed: <error>` or `stopped`,
then waits for a line on stdin, so that the test can look at the database while the process lives.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from litestar.testing import AsyncTestClient

from api import app as api_app
from api.app import create_app
from common.environment import load_settings


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    # The request's figures must still be pending at the stop: the once-a-second flush must not take
    # them first (it would fail too, and lose them, leaving the stop nothing to fail on).
    api_app._FLUSH_METRICS_INTERVAL_SECONDS = 3600
    app = create_app(load_settings(os.environ))
    try:
        async with AsyncTestClient(app=app) as client:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            assert (await client.get("/health/live")).status_code == 200
        say("stopped")
    except Exception as exc:  # what the server would log as a failed shutdown
        say(f"stop failed: {exc!r}")
    await asyncio.to_thread(sys.stdin.readline)


if __name__ == "__main__":
    asyncio.run(main())
