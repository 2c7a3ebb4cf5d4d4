"""The worker as the team that runs it sees it: metrics, and whether its loops still come round.

`/metrics` and `/health` are served on `ROOMS_HOST:ROOMS_WORKER_METRICS_PORT` by a small threaded
HTTP server (common/metrics_port.py), outside the event loop on purpose: a loop that is stuck cannot
answer for itself, and the server still tells which one it is. The figures that need Redis or
Postgres are read at scrape time, on the event loop, within the worker's bounds; if they cannot be
read within 2 s the last ones are served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from common.db.outbox import outbox_backlog
from common.db.pool import connection
from common.metrics import CONTENT_TYPE, Metrics
from common.metrics_port import serving
from common.redis.stream import stream_state
from common.settings import Settings

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from worker.resources import WorkerResources

log = logging.getLogger(__name__)

T = TypeVar("T")

# The loops `/health` watches: arq's (the scheduled jobs, or its restarts with backoff while Redis
# is away) and the stream's history consumer.
JOBS_LOOP = "jobs"
CONSUMER_LOOP = "history consumer"
LOOPS = (JOBS_LOOP, CONSUMER_LOOP)

# How long a scrape waits for fresh figures from Redis and Postgres before it serves the last ones.
_SCRAPE_WAIT_SECONDS = 2.0

_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


class WorkerMonitor:
    """The worker's own metrics and its loops' heartbeats. Its methods are cheap and never fail."""

    def __init__(self, metrics: Metrics, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self._stuck_after = settings.worker_stuck_seconds
        self._clock = clock
        started = clock()
        self._beats = dict.fromkeys(LOOPS, started)
        self._job_runs = metrics.counter(
            "worker_job_runs_total", "Runs of the worker's jobs, by job and outcome (ok, failed).", ("job", "outcome")
        )
        self._job_seconds = metrics.histogram(
            "worker_job_duration_seconds", "How long each run of a job took.", ("job",), _JOB_BUCKETS
        )
        self._job_success = metrics.gauge(
            "worker_job_last_success_timestamp_seconds", "When a job last ran to the end (Unix time).", ("job",)
        )
        self._events_recorded = metrics.counter(
            "worker_events_recorded_total", "Room events the history consumer recorded (copies included)."
        )
        self._loop_age = metrics.gauge(
            "worker_loop_seconds_since_progress", "Seconds since each of the worker's loops last came round.", ("loop",)
        )
        self.stream_length = metrics.gauge("stream_length", "Entries in the room event stream.")
        self.dead_letters = metrics.gauge("stream_dead_letter_length", "Entries in the dead-letter stream.")
        self.group_lag = metrics.gauge(
            "consumer_group_lag", "Stream entries the history consumer group has not read yet."
        )
        self.group_pending = metrics.gauge(
            "consumer_group_pending", "Stream entries read by a consumer and not yet acknowledged."
        )
        self._pruned = metrics.counter(
            "worker_pruned_rows_total", "Rows the pruning deleted, by table (worker/jobs/prune.py).", ("table",)
        )
        self.outbox_unpublished = metrics.gauge("outbox_unpublished", "Outbox events not yet on the stream.")
        self.rooms_live = metrics.gauge("rooms_live", "Live rooms that have started, as the last presence pass saw.")
        self.rooms_in_session = metrics.gauge(
            "rooms_in_session", "Live rooms with someone in them (a session in progress), as the last pass saw."
        )
        self.presence_refused = metrics.counter(
            "presence_checks_refused_total",
            "Rooms the presence pass left out because Redis refused their check or Postgres their figures (logged).",
        )
        self.outbox_oldest_age = metrics.gauge(
            "outbox_oldest_unpublished_age_seconds", "Age of the oldest event not yet on the stream (0 if none)."
        )

    def beat(self, loop: str) -> None:
        """`loop` came round: it did a piece of work, or is waiting out an outage on purpose."""
        self._beats[loop] = self._clock()

    def recorded(self, events: int) -> None:
        self._events_recorded.inc(events)

    def pruned(self, table: str, rows: int) -> None:
        self._pruned.labels(table).inc(rows)

    def job_ran(self, job: str, ok: bool, seconds: float) -> None:
        self._job_runs.labels(job, "ok" if ok else "failed").inc()
        self._job_seconds.labels(job).observe(seconds)
        if ok:
            self._job_success.labels(job).set(time.time())

    def loop_ages(self) -> dict[str, float]:
        now = self._clock()
        ages = {loop: now - beat for loop, beat in self._beats.items()}
        for loop, age in ages.items():
            self._loop_age.labels(loop).set(age)
        return ages

    def stuck_loops(self) -> list[str]:
        return [loop for loop, age in self.loop_ages().items() if age > self._stuck_after]


def observed(job: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """An arq job, counted and timed by the worker's monitor. Same name, so arq's job ids stay."""
    name = job.__name__

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any) -> T:
        monitor: WorkerMonitor = ctx["resources"].monitor
        started = time.perf_counter()
        ok = False
        try:
            result = await job(ctx, *args)
            ok = True
            return result
        finally:  # cancelled by arq's timeout too
            monitor.job_ran(name, ok, time.perf_counter() - started)

    return run


async def refresh_backlog(res: WorkerResources) -> None:
    """Read the stream's and the outbox's state into the monitor's gauges, within the worker's bounds.
    Each on its own: while Redis is down the outbox grows, and its figures are the ones that say so."""
    await asyncio.gather(_refresh_stream(res), _refresh_outbox(res))


async def _refresh_stream(res: WorkerResources) -> None:
    monitor, settings = res.monitor, res.settings
    try:
        async with asyncio.timeout(settings.worker_redis_timeout_seconds):
            state = await stream_state(res.redis, settings.stream_name, settings.consumer_group)
    except Exception as exc:  # Redis away: the last figures stay, and the scrape still answers
        log.warning("metrics: could not read the stream's state (%r); serving the last figures", exc)
        return
    monitor.stream_length.set(state.length)
    monitor.dead_letters.set(state.dead_letters)
    monitor.group_pending.set(state.pending)
    if state.lag is not None:
        monitor.group_lag.set(state.lag)


async def _refresh_outbox(res: WorkerResources) -> None:
    monitor = res.monitor
    try:
        async with connection(res.pool, res.settings.worker_db_timeout_seconds) as conn:
            backlog = await outbox_backlog(conn)
    except Exception as exc:  # Postgres away, likewise
        log.warning("metrics: could not read the outbox's state (%r); serving the last figures", exc)
        return
    monitor.outbox_unpublished.set(backlog.unpublished)
    monitor.outbox_oldest_age.set(backlog.oldest_age_seconds)


class _Refresher:
    """Scrapes ask for fresh figures; at most one read of them runs at a time, and a scrape waits for
    it only briefly: a slow Postgres must not make the scrape time out (Prometheus gives up after
    10 s by default), nor a blocked loop pile up reads that would all run when it frees."""

    def __init__(self, res: WorkerResources, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        self._res = res
        self._loop = loop
        self._wait = wait
        self._running: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()  # scrapes come in on threads of their own

    def refresh(self) -> None:
        with self._lock:
            if self._running is None or self._running.done():
                self._running = asyncio.run_coroutine_threadsafe(refresh_backlog(self._res), self._loop)
            running = self._running
        with contextlib.suppress(concurrent.futures.TimeoutError):
            running.result(timeout=self._wait)  # else it finishes later, for the next scrape


class _Health(msgspec.Struct, frozen=True, rename="camel"):
    status: str  # "ok", or "stuck" when a loop has not come round within ROOMS_WORKER_STUCK_SECONDS
    stuck: list[str]
    seconds_since_progress: dict[str, float]


@contextmanager
def monitor_server(res: WorkerResources, loop: asyncio.AbstractEventLoop) -> Iterator[int | None]:
    """Serve /metrics and /health while the block runs; yields the port (None when switched off)."""
    settings = res.settings
    if settings.worker_metrics_port == 0:
        yield None
        return
    refresher = _Refresher(res, loop, _SCRAPE_WAIT_SECONDS)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"GET or HEAD only\n"]
        if path == "/metrics":
            refresher.refresh()
            res.monitor.loop_ages()
            body = res.metrics.exposition()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        if path == "/health":
            stuck = res.monitor.stuck_loops()
            ages = {loop: round(age, 3) for loop, age in res.monitor.loop_ages().items()}
            body = msgspec.json.encode(_Health("stuck" if stuck else "ok", stuck, ages))
            status = "503 Service Unavailable" if stuck else "200 OK"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /health\n"]

    with serving(
        app,
        settings.host,
        settings.worker_metrics_port,
        setting="WORKER_METRICS_PORT",
        what="worker metrics and health",
    ) as port:
        yield port
