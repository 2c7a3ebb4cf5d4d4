"""The presence pass with real processes around it: a worker process ending an empty room in time, and
a Redis restarted without its data, whose open session ends `lost`. One topology: servers and
processes of the test's own."""

from __future__ import annotations

import contextlib
import subprocess
from typing import cast

import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from api.app import create_app
from common.redis.keys import sessions_key
from common.redis.sessions import epoch_ms, parse_session
from common.signaling.contract import JoinContract
from tests.support.metrics import metric_value
from tests.support.presence import HEARTBEAT_MS, events, is_active, recorded, room_with
from tests.support.processes import ROOMSERVICE, environment, free_port, stop_as_container
from tests.support.waiting import eventually
from worker.jobs.presence import check_presence
from worker.resources import worker_resources


@pytest.mark.one_topology  # a server of the test's own, to restart
async def test_a_session_redis_lost_ends_lost_at_the_last_moment_seen(own_redis, settings_with, host, db) -> None:
    settings = settings_with(redis_url=own_redis.connection_url, redis_retry_seconds=0.2)
    async with AsyncTestClient(app=create_app(settings)) as client, worker_resources(settings) as res:
        contract = JoinContract(cast(Redis, res.redis))  # standalone, as own_redis is
        room_id = await room_with(client, host, emptyTimeoutSeconds=0, unusedTimeoutSeconds=0)
        assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
        await check_presence({"resources": res})
        [seen] = await recorded(db, room_id)

        own_redis.stop()  # no persistence: the room's object, participants and session are gone
        own_redis.start()
        await eventually(res.guarded.ping, 10, "Redis back")
        assert (await client.get(f"/rooms/{room_id}")).status_code == 200  # cached again from Postgres
        assert (await contract.join(room_id, "bob", HEARTBEAT_MS)).outcome == "admitted"  # a new session

        await check_presence({"resources": res})

        lost, new = await recorded(db, room_id)
        assert (lost["end_reason"], lost["ended_at"]) == ("lost", seen["seen_at"])
        assert lost["participant_ms"] == seen["participant_ms"]
        assert new["ended_at"] is None
        # In the order they happened: the lost session's end, then the new one's start.
        written = await events(db, room_id, "session.started", "session.ended")
        assert [(t, at) for t, at, _ in written][1:] == [
            ("session.ended", seen["seen_at"]),
            ("session.started", new["started_at"]),
        ]
        assert written[1][2]["session"]["endReason"] == "lost"
        assert await is_active(db, room_id)  # the room lives on


@pytest.mark.one_topology
async def test_a_worker_process_ends_an_empty_room_within_its_timeout_and_one_check_period(
    settings, client, host, redis_client, own_redis, tmp_path, db
) -> None:
    port = free_port()
    env = environment(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        queue_redis_url=own_redis.connection_url,  # arq's queue of its own, as test_schedule_lifecycle's
        presence_check_seconds="1",
        worker_metrics_port=str(port),
    )
    contract = JoinContract(redis_client)
    room_id = await room_with(client, host, emptyTimeoutSeconds=1)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*ROOMSERVICE, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        async def checking() -> bool:  # the pass has run: the worker's clock is going
            assert worker.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                return (metric_value(text, "roomservice_worker_job_runs_total", job="check_presence") or 0) >= 1
            return False

        await eventually(checking, 60, "the worker's presence pass running")
        assert (await contract.join(room_id, "alice", HEARTBEAT_MS)).outcome == "admitted"
        await contract.leave(room_id, "alice")
        [left] = [parse_session(r.decode()) for r in await redis_client.lrange(sessions_key(room_id), 0, -1)]

        async def ended() -> bool:
            return not await is_active(db, room_id)

        await eventually(ended, 30, "the worker ended the empty room")
    finally:
        stop_as_container(worker)
    [(_, ended_at, data)] = await events(db, room_id, "room.ended")
    assert data["reason"] == "empty"
    assert left.ended_ms is not None
    # Due 1 s after alice left; checked every second. The slack is a slow machine's.
    assert 1_000 <= epoch_ms(ended_at) - left.ended_ms <= (1 + 1 + 3) * 1_000
