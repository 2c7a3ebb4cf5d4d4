"""What the arq worker runs: the job the API asks for, and the periodic jobs on the wall clock."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from arq import cron, func

from common.jobs import RESTORE_ROOM_CACHE
from common.settings import clock_fields
from common.tracing import traced_job
from worker.jobs.cache import restore_room_cache, sweep_room_cache
from worker.jobs.lifecycle import expire_rooms, start_rooms
from worker.jobs.outbox import relay_outbox
from worker.jobs.presence import check_presence
from worker.jobs.prune import prune, run_seconds
from worker.monitor import observed
from worker.resources import WorkerResources

# How long running jobs may go on after SIGTERM before they are cancelled (and later retried).
JOB_COMPLETION_WAIT_SECONDS = 10
POLL_DELAY_SECONDS = 0.1


def on_clock(seconds: int) -> dict[str, Any]:
    """arq cron arguments for "every `seconds`" (which divides a minute, or an hour in whole minutes)."""
    fields = clock_fields(seconds)
    if fields is None:
        raise ValueError(f"every {seconds} s does not fall on a clock")  # settings refuse such intervals
    return fields


def worker_settings(res: WorkerResources) -> dict[str, Any]:
    """arq's WorkerSettings for this service, as keyword arguments of `arq.worker.Worker`."""
    settings = res.settings

    # Each run of a job is counted and timed (worker/monitor.py) and, with tracing on, a span of its own.
    def job(run: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
        return observed(traced_job(run))

    return {
        "functions": [func(job(restore_room_cache), name=RESTORE_ROOM_CACHE, keep_result=0, max_tries=5)],
        "cron_jobs": [
            cron(job(relay_outbox), second=set(range(60)), timeout=30),
            # Every second, on the second: `room.started` is due at the room's start, not at the next
            # expiry pass, nor at arq's default of .123456 s past it.
            cron(job(start_rooms), second=set(range(60)), microsecond=0, timeout=30),
            cron(job(expire_rooms), **on_clock(settings.expiry_interval_seconds), timeout=60),
            # A pass over every live room: its period is what docs/scaling.md measures it to need.
            cron(job(check_presence), **on_clock(settings.presence_check_seconds), timeout=600),
            cron(
                job(sweep_room_cache),
                **on_clock(settings.sweep_interval_seconds),
                run_at_startup=True,
                timeout=600,
            ),
            # At the start too: a worker that restarts more often than the interval still prunes.
            cron(
                job(prune),
                **on_clock(settings.prune_interval_seconds),
                run_at_startup=True,
                # it starts batches for a share of the interval; the last one may take the database bound
                timeout=run_seconds(settings.prune_interval_seconds) + settings.worker_db_timeout_seconds,
            ),
        ],
        "ctx": {"resources": res},
        "max_jobs": 20,
        "job_timeout": 60,
        "keep_result": 60,
        "job_completion_wait": JOB_COMPLETION_WAIT_SECONDS,
        # How soon a job due is picked up (arq's default is 0.5 s): `room.started` is due at a room's
        # start. A poll is one cheap read of the queue's Redis.
        "poll_delay": POLL_DELAY_SECONDS,
    }
