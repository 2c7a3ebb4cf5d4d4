"""The API's `/metrics` on `ROOMS_HOST:ROOMS_METRICS_PORT`, apart from the public port.

Served by the worker's server (common/metrics_port.py), on a thread; the exposition itself runs on the
event loop, because it first flushes the request tallies (`RequestMetrics.flush`), which the loop
updates without a lock. With several processes each binds the port (SO_REUSEPORT), and whichever
answers reads every process's figures from PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from common.metrics import CONTENT_TYPE, Metrics
from common.metrics_port import serving
from common.settings import Settings

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

# A scrape waits this long for the loop; Prometheus gives up after 10 s by default.
_SCRAPE_WAIT_SECONDS = 5.0


@contextmanager
def metrics_apart(metrics: Metrics, settings: Settings, loop: asyncio.AbstractEventLoop) -> Iterator[int]:
    """Serve `/metrics` on the metrics port while the block runs; yields the port."""

    async def exposition() -> bytes:
        return metrics.exposition()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"GET or HEAD only\n"]
        if environ.get("PATH_INFO", "") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"/metrics\n"]
        try:
            body = asyncio.run_coroutine_threadsafe(exposition(), loop).result(timeout=_SCRAPE_WAIT_SECONDS)
        except concurrent.futures.TimeoutError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"the process is too busy to answer in time\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    with serving(app, settings.host, settings.metrics_port, setting="METRICS_PORT", shared=True) as port:
        yield port
