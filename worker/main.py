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
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron, func
from arq.connections import ArqRedis
from arq.worker import Worker
from redis.exceptions import RedisError

from common.cache import create_redis
from common.jobs import RESTORE_ROOM_CACHE
from common.rooms import DatabaseUnavailable
from common.settings import Settings
from worker.cache_rebuild import restore_room_cache, sweep_room_cache
from worker.expiry import expire_rooms
from worker.history import HistoryConsumer
from worker.outbox import prune_outbox, relay_outbox
from worker.resources import WorkerResources, worker_resources

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 10.0
# How long running jobs may go on after SIGTERM before they are cancelled (and later retried).
_JOB_COMPLETION_WAIT_SECONDS = 10


def on_clock(seconds: int) -> dict[str, Any]:
    """arq cron arguments for "every `seconds`" (which divides a minute, or an hour in whole minutes)."""
    if seconds < 60:
        return {"second": set(range(0, 60, seconds))}
    return {"minute": set(range(0, 60, seconds // 60)), "second": 0}


def worker_settings(res: WorkerResources) -> dict[str, Any]:
    """arq's WorkerSettings for this service, as keyword arguments of `arq.worker.Worker`."""
    settings = res.settings
    return {
        "functions": [func(restore_room_cache, name=RESTORE_ROOM_CACHE, keep_result=0, max_tries=5)],
        "cron_jobs": [
            cron(relay_outbox, second=set(range(60)), timeout=30),
            cron(expire_rooms, **on_clock(settings.expiry_interval_seconds), timeout=60),
            cron(sweep_room_cache, **on_clock(settings.sweep_interval_seconds), run_at_startup=True, timeout=600),
            cron(prune_outbox, minute={17}, second=0, timeout=300),
        ],
        "ctx": {"resources": res},
        "max_jobs": 20,
        "job_timeout": 60,
        "keep_result": 60,
        "job_completion_wait": _JOB_COMPLETION_WAIT_SECONDS,
    }


async def run_worker(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with worker_resources(settings) as res:
        consumer = HistoryConsumer(res)
        log.info("worker %s started", consumer.name)
        await asyncio.gather(
            supervise("jobs", lambda: run_jobs(res, stop), stop),
            supervise("history consumer", lambda: consumer.run(stop), stop),
        )
    log.info("worker %s stopped", consumer.name)


async def supervise(name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run `run` again whenever it fails, waiting longer each time it fails quickly, until `stop`."""
    backoff = 0.5
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run()
        except (RedisError, OSError, DatabaseUnavailable) as exc:
            log.warning("%s failed, a dependency is unavailable (%r); restarting in %.1fs", name, exc, backoff)
        except Exception:
            log.exception("%s failed; restarting in %.1fs", name, backoff)
        if time.monotonic() - started > 60:
            backoff = 0.5  # it had been running fine: this is a new incident
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)


async def run_jobs(res: WorkerResources, stop: asyncio.Event) -> None:
    """One arq worker, from start until it fails (Redis went away) or `stop` is set."""
    # A fresh bounded client each time: arq closes the one it was given when it stops.
    queue = create_redis(res.settings, res.settings.worker_redis_timeout_seconds, ArqRedis)
    worker = Worker(**worker_settings(res), redis_pool=queue, handle_signals=False)
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
        await queue.aclose()
