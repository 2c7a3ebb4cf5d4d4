"""The worker process (`roomservice worker`): arq jobs and cron jobs, and the room stream consumer.

arq's poll loop ends on the first Redis connection error, so each part runs under a supervisor that
starts it again, with backoff, until the process is asked to stop. SIGTERM (or Ctrl-C) stops taking
work: the consumer finishes and acknowledges its batch, arq lets running jobs finish for a while.
Anything cut short is picked up again (arq retries its jobs, pending stream entries are claimed) and,
effects being idempotent, never doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker
from redis.exceptions import RedisError

from common import tracing
from common.errors import DatabaseUnavailable
from common.redis.client import close_redis, create_queue_redis
from common.settings import Settings
from worker.backoff import Backoff
from worker.history import HistoryConsumer
from worker.monitor import CONSUMER_LOOP, JOBS_LOOP, WorkerMonitor, monitor_server
from worker.resources import WorkerResources, worker_resources
from worker.schedule import worker_settings

log = logging.getLogger(__name__)

# A part that ran this long before failing had been running fine: its failure is a new incident.
_HEALTHY_RUN_SECONDS = 60


async def run_worker(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT."""
    tracing.start_from_environment("roomservice-worker", os.environ)  # before the jobs are wrapped
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with worker_resources(settings) as res:
        consumer = HistoryConsumer(res)
        log.info("worker %s started", consumer.name)
        with monitor_server(res, loop):
            await asyncio.gather(
                supervise(JOBS_LOOP, lambda: run_jobs(res, stop), stop, res.monitor),
                supervise(CONSUMER_LOOP, lambda: consumer.run(stop), stop, res.monitor),
            )
    log.info("worker %s stopped", consumer.name)


async def supervise(
    name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event, monitor: WorkerMonitor | None = None
) -> None:
    """Run `run` again whenever it fails, waiting longer each time it fails quickly, until `stop`.
    Each start counts as the loop `name` coming round: it is retrying, not stuck."""
    backoff = Backoff(stop)
    while not stop.is_set():
        if monitor is not None:
            monitor.beat(name)
        started = time.monotonic()
        try:
            await run()
        except (RedisError, OSError, DatabaseUnavailable) as exc:
            log.warning("%s failed, a dependency is unavailable (%r); restarting in %.1fs", name, exc, backoff.delay)
        except Exception:
            log.exception("%s failed; restarting in %.1fs", name, backoff.delay)
        if time.monotonic() - started > _HEALTHY_RUN_SECONDS:
            backoff.reset()
        await backoff.wait()


class _MonitoredWorker(Worker):
    """arq's worker, whose every poll of the queue counts as the jobs loop coming round: with several
    workers, one may go a long time without winning a job to run, and is not stuck for that."""

    def __init__(self, monitor: WorkerMonitor, **settings: Any) -> None:
        super().__init__(**settings)
        self._monitor = monitor

    async def heart_beat(self) -> None:
        await super().heart_beat()
        self._monitor.beat(JOBS_LOOP)


async def run_jobs(res: WorkerResources, stop: asyncio.Event) -> None:
    """One arq worker, from start until it fails (Redis went away) or `stop` is set."""
    # A fresh bounded client each time: arq closes the one it was given when it stops.
    queue = create_queue_redis(res.settings, res.settings.worker_redis_timeout_seconds, ArqRedis)
    worker = _MonitoredWorker(res.monitor, **worker_settings(res), redis_pool=queue, handle_signals=False)
    main = asyncio.create_task(worker.main())
    worker.main_task = main  # what arq's shutdown cancels once running jobs are done
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done() and not main.done():
            # Stop picking jobs; running ones get a while to finish before arq cancels them.
            worker.handle_sig_wait_for_completion(signal.SIGTERM)
            with contextlib.suppress(asyncio.CancelledError):
                await main
        elif main.done():
            main.result()  # re-raise why it ended, for the supervisor
    finally:
        stopping.cancel()
        main.cancel()
        for task in worker.tasks.values():
            task.cancel()
        await asyncio.gather(main, *worker.tasks.values(), return_exceptions=True)
        await close_redis(queue)
