"""Two API processes and two workers on one Postgres and one Redis, under load, each killed once with
SIGKILL and started again: every event is recorded once, and the daily figures are exact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from roomservice.migrate import migrate
from tests.support.processes import ROOMSERVICE, environment, free_port, wait_until_ready
from tests.support.waiting import eventually

LOAD_SECONDS = 6.0


class Fleet:
    """The processes of one deployment, started from the same environment."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.api_ports = [free_port(), free_port()]
        self.worker_ports = [free_port(), free_port()]
        self.apis: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_api(self, index: int) -> subprocess.Popen[bytes]:
        env = {**self.env, "ROOMS_PORT": str(self.api_ports[index])}
        process = self._start(["serve"], env, f"api-{index}")
        wait_until_ready(self.api_ports[index], process)
        return process

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        # Two workers on one host: each serves its metrics and health on a port of its own.
        env = {**self.env, "ROOMS_WORKER_METRICS_PORT": str(self.worker_ports[index])}
        return self._start(["worker"], env, f"worker-{index}")

    def _start(self, command: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        # A session of its own: `serve` runs granian's worker processes under it, and a kill takes
        # them all, as when a container or a machine dies.
        with (self.logs / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [*ROOMSERVICE, *command], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL to the process and everything it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in [*self.apis, *self.workers]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.apis, *self.workers]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(process)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything of the group still there


@pytest.fixture
async def fleet_database(scratch_database: str) -> str:
    """A database of this test's own: the daily figures it checks count only its rooms."""
    await migrate(scratch_database)
    return scratch_database


async def test_two_apis_and_two_workers_killed_under_load_record_every_event_once(
    fleet_database: str, own_redis, tmp_path: Path
) -> None:
    stream = f"test:{uuid.uuid4().hex[:12]}:events"
    env = environment(
        database_url=fleet_database,
        redis_url=own_redis.connection_url,
        stream_name=stream,
        log_level="info",
        create_limit_per_minute="0",
        change_limit_per_minute="0",  # one host ends many rooms
        sweep_interval_seconds="2",
        claim_idle_seconds="2",
        worker_db_timeout_seconds="1.5",
        relay_grace_seconds="1.6",
        redis_retry_seconds="0.5",
        workers="1",
        # Two workers share the jobs: one may win none for a long while, and is not stuck for that.
        worker_stuck_seconds="10",
    )
    fleet = Fleet(env, tmp_path)
    statuses: list[int] = []
    stop = asyncio.Event()
    try:
        fleet.apis = [fleet.start_api(0), fleet.start_api(1)]
        fleet.workers = [fleet.start_worker(0), fleet.start_worker(1)]

        async def load(port: int) -> None:
            host = {"X-User-Id": str(uuid.uuid4())}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                while not stop.is_set():
                    try:
                        created = await client.post("/rooms", headers=host)
                        statuses.append(created.status_code)
                        if created.status_code == 201 and len(statuses) % 4 == 0:
                            code = created.json()["roomId"]
                            statuses.append((await client.delete(f"/rooms/{code}", headers=host)).status_code)
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)  # that API process is down: the other one goes on

        clients = [asyncio.create_task(load(port)) for port in fleet.api_ports for _ in range(3)]
        await asyncio.sleep(LOAD_SECONDS / 3)
        fleet.kill(fleet.workers[0])  # its batch in hand stays pending, to be claimed by the other
        fleet.kill(fleet.apis[1])  # its published but unmarked events are relayed again
        await asyncio.sleep(LOAD_SECONDS / 3)
        fleet.workers[0] = fleet.start_worker(0)
        fleet.apis[1] = await asyncio.to_thread(fleet.start_api, 1)
        await asyncio.sleep(LOAD_SECONDS / 3)
        stop.set()
        await asyncio.gather(*clients)

        db = await asyncpg.connect(fleet_database, timeout=10)
        inspect = redis.Redis.from_url(own_redis.connection_url, socket_timeout=5)
        try:

            async def everything_recorded() -> bool:
                waiting = await db.fetchval(
                    "SELECT count(*) FROM room_events e WHERE NOT EXISTS "
                    "(SELECT 1 FROM room_history h WHERE h.event_id = e.event_id)"
                )
                return waiting == 0

            await eventually(everything_recorded, 30, "every event recorded in the history")

            rooms = await db.fetchval("SELECT count(*) FROM meetings")
            ended = await db.fetchval("SELECT count(*) FROM meetings WHERE NOT is_active")
            assert rooms > 50
            # History rows equal events: none missing, none doubled (whatever was redelivered).
            assert await db.fetchval("SELECT count(*) FROM room_history") == await db.fetchval(
                "SELECT count(*) FROM room_events"
            )
            totals = await db.fetchrow(
                "SELECT sum(rooms_created) AS created, sum(rooms_ended) AS ended FROM daily_room_stats"
            )
            assert totals is not None
            assert (totals["created"], totals["ended"]) == (rooms, ended)
            # Both workers' consumers took part in the one group.
            consumers = {c["name"] for c in await inspect.xinfo_consumers(stream, "roomservice-history")}
            assert len(consumers) >= 2
            # And both are healthy, though the other may have won most of the jobs.
            for port in fleet.worker_ports:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
                assert health.status_code == 200, health.text
        finally:
            await db.close()
            await inspect.aclose()
    finally:
        stop.set()
        fleet.stop_all()
        if os.environ.get("CI"):
            for log in sorted(tmp_path.glob("*.log")):
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}")

    # What each process answered, while both, or one, were up: never an error of the service.
    assert statuses.count(201) > 50
    assert not [status for status in statuses if status >= 500]
