"""No event lost when Redis loses what it acknowledged: a restart without persistence, and a Sentinel
failover under load that promotes a replica which never received the last writes.

Redis replicates asynchronously, so a primary acknowledges writes its replica may never see. The relay
notices that the primaries changed and publishes the recent events again (common/db/publication.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as redis
from litestar.testing import AsyncTestClient
from redis.crc import key_slot

from api.app import create_app
from common.db.outbox import mark_published
from common.redis.client import REDIS_UNAVAILABLE, close_redis, create_redis
from common.redis.keys import ended_room_key, room_key
from common.rooms.events import from_stream_fields
from common.settings import Settings
from tests.support.metrics import metric_value
from tests.support.relay import relay_now
from tests.support.topologies import SENTINEL_MASTER, ClusterTopology, Server, redis_cluster, redis_sentinel
from tests.support.waiting import eventually
from worker.jobs.outbox import relay_outbox
from worker.resources import WorkerResources, worker_resources


async def published(client: redis.Redis | redis.RedisCluster, stream: str) -> set[tuple[str, str]]:
    """(roomId, type) of every event on the stream."""
    events = [from_stream_fields(fields) for _, fields in await client.xrange(stream)]
    return {(event.room_id, event.type) for event in events}


async def relay_until_done(res: WorkerResources) -> None:
    """Run the relay until nothing is left to publish (its cron would, once a second)."""
    context = relay_now(res)
    for _ in range(20):
        if await relay_outbox(context) == 0:
            return
    pytest.fail("the relay kept finding events to publish")


async def test_a_redis_restarted_without_its_data_gets_the_recent_events_again(
    own_redis, settings_with, stream_name, host
) -> None:
    settings = settings_with(redis_url=own_redis.connection_url, redis_retry_seconds=0.2)
    async with AsyncTestClient(app=create_app(settings)) as client:
        codes = [(await client.post("/rooms", headers=host)).json()["roomId"] for _ in range(3)]
        ended, changed, live = codes
        assert (await client.delete(f"/rooms/{ended}", headers=host)).status_code == 204
        assert (await client.patch(f"/rooms/{changed}", headers=host, json={"maxParticipants": 2})).status_code == 200
        await asyncio.sleep(0.3)  # the API marks its published events every 100 ms

    async with worker_resources(settings) as res:
        await relay_until_done(res)  # the relay notes which primary it publishes to
        expected = {(c, "room.created") for c in codes} | {(ended, "room.ended"), (changed, "room.updated")}
        # (A relay may also publish other tests' events here: the outbox is the suite's.)
        assert expected <= await published(res.redis, stream_name)

        own_redis.stop()  # no persistence: the stream, the room keys and the ended mark are gone
        own_redis.start()
        await eventually(res.guarded.ping, 10, "Redis back")
        assert await res.redis.xlen(stream_name) == 0

        await relay_until_done(res)

        assert expected <= await published(res.redis, stream_name)
        assert await res.redis.exists(room_key(live), room_key(changed)) == 2
        assert not await res.redis.exists(room_key(ended))
        assert await res.redis.exists(ended_room_key(ended))


async def test_nothing_is_published_again_while_the_primaries_stay(
    settings, client, host, worker_res, redis_client, stream_name
) -> None:
    await client.post("/rooms", headers=host)
    await asyncio.sleep(0.3)
    await relay_until_done(worker_res)
    before = await redis_client.xlen(stream_name)

    await relay_until_done(worker_res)

    assert await redis_client.xlen(stream_name) == before


@dataclass
class Failover:
    """A primary to kill and the replica that should take its place, in one topology."""

    settings_fields: dict[str, object]
    primary: Server
    replica: Server
    owned_slots: range  # the slots the primary serves (all of them, but for a cluster)
    promoted: Callable[[], bool]

    def owns(self, key: str) -> bool:
        return key_slot(key.encode()) in self.owned_slots


@pytest.fixture(params=["sentinel", "cluster"])
def failover(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, stream_name: str) -> Iterator[Failover]:
    """Sentinel: the primary. Cluster: the master that holds the event stream."""
    if request.param == "sentinel":
        with redis_sentinel(tmp_path / "sentinel") as sentinel:
            yield Failover(
                settings_fields={
                    "redis_mode": "sentinel",
                    "redis_sentinels": sentinel.addresses,
                    "redis_sentinel_master": SENTINEL_MASTER,
                },
                primary=sentinel.primary,
                replica=sentinel.replica,
                owned_slots=range(16384),
                promoted=lambda: sentinel.current_primary_port() != sentinel.primary.port,
            )
        return
    with redis_cluster(tmp_path / "cluster") as cluster:
        index = next(i for i, slots in enumerate(cluster.slots) if key_slot(stream_name.encode()) in slots)
        replica = cluster.replicas[index]
        yield Failover(
            settings_fields={"redis_mode": "cluster", "redis_url": cluster.url, "queue_redis_url": redis_url},
            primary=cluster.masters[index],
            replica=replica,
            owned_slots=cluster.slots[index],
            promoted=lambda: _role(replica) == "master",
        )


async def test_a_failover_under_load_loses_no_event(failover: Failover, database_url, stream_name, db) -> None:
    settings = msgspec.convert(
        {
            "database_url": database_url,
            "stream_name": stream_name,
            "redis_retry_seconds": 0.5,
            "create_limit_per_minute": 0,  # one host creates and ends hundreds of rooms here
            "change_limit_per_minute": 0,
            **failover.settings_fields,
        },
        Settings,
    )
    host = {"X-User-Id": str(uuid.uuid4())}
    answers: list[int] = []
    stop = asyncio.Event()

    async with AsyncTestClient(app=create_app(settings)) as client:

        async def create_and_end() -> None:
            """Create rooms, end every third, validate each: what the service answers throughout."""
            while not stop.is_set():
                created = await client.post("/rooms", headers=host)
                answers.append(created.status_code)
                if created.status_code == 201:
                    code = created.json()["roomId"]
                    if len(answers) % 3 == 0:
                        answers.append((await client.delete(f"/rooms/{code}", headers=host)).status_code)
                    answers.append((await client.get(f"/rooms/{code}")).status_code)
                await asyncio.sleep(0)  # the test client answers in line: let the test go on between requests

        async def room_on_the_failing_primary() -> str:
            while True:
                code: str = (await client.post("/rooms", headers=host)).json()["roomId"]
                if failover.owns(room_key(code)):
                    return code

        # Rooms whose creation the replica has, ended while it receives nothing.
        doomed = [await room_on_the_failing_primary() for _ in range(5)]
        await eventually(lambda: _replica_caught_up(failover), 10, "the replica to catch up")

        # As the relay's cron does every second: it knows the primaries. (Not while the load runs:
        # this test client answers requests on the test's own thread, which the relay needs too.)
        async with worker_resources(settings) as res:
            await relay_until_done(res)
        load = [asyncio.create_task(create_and_end()) for _ in range(4)]
        await asyncio.sleep(1.0)

        # The replica stops reading; what the primary sends it from now on never arrives: a large
        # value fills the socket buffers, and the writes after it stay in the primary's memory.
        assert failover.replica.process is not None
        failover.replica.process.send_signal(signal.SIGSTOP)
        try:
            filler = "{" + stream_name + "}:filler"  # on the stream's node
            await asyncio.to_thread(failover.primary.client().set, filler, b"x" * (32 << 20))
            for code in doomed:
                assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
            await asyncio.sleep(0.3)  # acknowledged by the primary, marked published by the API
            marked = await db.fetchval(
                "SELECT count(*) FROM room_events WHERE type = 'room.ended' AND room_id = any($1) "
                "AND published_at IS NOT NULL",
                doomed,
            )
            failover.primary.kill()
        finally:
            failover.replica.process.send_signal(signal.SIGCONT)
        killed_at = time.monotonic()

        await eventually(lambda: _promoted(failover), 30, "the replica to be promoted")
        promoted_at = time.monotonic()
        inspect = create_redis(settings, 5)
        try:
            # Cache writes resume by themselves within 10 s of the promotion.
            async def new_room_cached() -> bool:
                code = await room_on_the_failing_primary()
                return bool(await inspect.exists(room_key(code)))

            await eventually(new_room_cached, 10, "cache writes on the promoted replica")
            resumed_after = time.monotonic() - promoted_at
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*load)

            # The test is what it says: the ends were published, and the promoted replica lacks them.
            assert marked == len(doomed)
            assert not await inspect.exists(*(ended_room_key(code) for code in doomed))
            assert await inspect.exists(*(room_key(code) for code in doomed)) == len(doomed)

            async with worker_resources(settings) as res:
                await relay_until_done(res)

            events = await published(inspect, stream_name)
            rooms = await db.fetch(
                "SELECT room_id, is_active FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"])
            )
            assert {(r["room_id"], "room.created") for r in rooms} <= events
            ended = [r["room_id"] for r in rooms if not r["is_active"]]
            assert set(doomed) <= set(ended)
            assert {(code, "room.ended") for code in ended} <= events
            # No room ended before the failover is live again on the promoted replica.
            for code in ended:
                assert not await inspect.exists(room_key(code))
        finally:
            await close_redis(inspect)

    # GET and POST kept answering through it all (from Postgres while Redis was away).
    assert len(answers) > 20
    assert not [status for status in answers if status >= 500]
    assert resumed_after < 10, (
        f"cache writes resumed {resumed_after:.1f}s after the promotion ({promoted_at - killed_at:.1f}s after the kill)"
    )


async def _replica_caught_up(failover: Failover) -> bool:
    def offsets() -> tuple[object, object]:
        return _replication(failover.primary)["master_repl_offset"], _replication(failover.replica)[
            "master_repl_offset"
        ]

    primary, replica = await asyncio.to_thread(offsets)
    return primary == replica


async def _promoted(failover: Failover) -> bool:
    with contextlib.suppress(Exception):
        return await asyncio.to_thread(failover.promoted)
    return False


def _replication(server: Server) -> dict[str, object]:
    info: dict[str, object] = server.client().info("replication")  # type: ignore[assignment]
    return info


def _role(server: Server) -> object:
    return _replication(server)["role"]


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ClusterTopology]:
    with redis_cluster(tmp_path / "cluster") as cluster:
        yield cluster


def move_slot(cluster: ClusterTopology, slot: int) -> Server:
    """Move `slot`, with its keys, from the master that serves it to another, as a resharding does
    (CLUSTER SETSLOT IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE). Returns the new owner."""
    source = next(m for m, slots in zip(cluster.masters, cluster.slots, strict=True) if slot in slots)
    target = next(m for m in cluster.masters if m is not source)
    source_id, target_id = (m.client().execute_command("CLUSTER", "MYID").decode() for m in (source, target))
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := source.client().execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for master in cluster.masters:
        master.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return target


@pytest.mark.one_topology
async def test_a_moved_slot_is_followed_without_an_outage(
    own_cluster: ClusterTopology, settings_with, redis_url, host
) -> None:
    settings = settings_with(redis_mode="cluster", redis_url=own_cluster.url, queue_redis_url=redis_url)
    async with AsyncTestClient(app=create_app(settings)) as client:
        code = (await client.post("/rooms", headers=host)).json()["roomId"]
        target = await asyncio.to_thread(move_slot, own_cluster, key_slot(room_key(code).encode()))

        assert (await client.get(f"/rooms/{code}")).status_code == 200
        patched = await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 3})
        assert patched.status_code == 200
        metrics = (await client.get("/metrics")).text

    # The room's keys live on the new owner, written there after the move; Redis never looked down.
    assert json.loads(target.client().get(room_key(code)))["maxParticipants"] == 3  # type: ignore[arg-type]
    assert metric_value(metrics, "roomservice_cache_errors_total") == 0
    assert metric_value(metrics, "roomservice_database_lookups_total") == 0  # the GET was a cache hit


@pytest.mark.one_topology
async def test_a_mark_racing_a_change_of_primaries_is_refused(client, host, db, database_url) -> None:
    """A mark read under the old generation must not land once the relay has recorded new primaries:
    the event may be missing there, and the replay must find its row unpublished."""
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    outbox_id = await db.fetchval("SELECT id FROM room_events WHERE room_id = $1", code)

    async def marked_by_the_api() -> bool:
        return await db.fetchval("SELECT published_at IS NOT NULL FROM room_events WHERE id = $1", outbox_id)

    # The API marks its own event a moment after answering; that mark must land before the row is made
    # unpublished again, or it would be the mark that sets published_at, not the one under test.
    await eventually(marked_by_the_api, 5, "the API marks its event published")
    await db.execute("UPDATE room_events SET published_at = NULL WHERE id = $1", outbox_id)
    await db.execute(
        "INSERT INTO redis_primaries (identity, generation, seen_at) VALUES ('old', 7, now()) "
        "ON CONFLICT (singleton) DO UPDATE SET identity = 'old', generation = 7"
    )
    relay = await asyncpg.connect(database_url, timeout=10)
    marker = await asyncpg.connect(database_url, timeout=10)
    try:
        recording = relay.transaction()
        await recording.start()
        await relay.execute("SELECT * FROM redis_primaries FOR UPDATE")  # as note_primaries does
        # Read under generation 7. (A plain connection: the statement is the same as through a pool.)
        mark = asyncio.create_task(mark_published(marker, [(outbox_id, 7)]))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        assert not mark.done(), "the mark did not wait for the change being recorded"
        await relay.execute("UPDATE redis_primaries SET identity = 'new', generation = 8")
        await recording.commit()
        await asyncio.wait_for(mark, 5)
    finally:
        await relay.close()
        await marker.close()
    assert await db.fetchval("SELECT published_at FROM room_events WHERE id = $1", outbox_id) is None


@pytest.mark.one_topology
async def test_a_cluster_back_from_a_full_outage_is_found_again(
    own_cluster: ClusterTopology, settings_with, redis_url, host
) -> None:
    settings = settings_with(
        redis_mode="cluster", redis_url=own_cluster.url, queue_redis_url=redis_url, redis_retry_seconds=0.2
    )
    nodes = [*own_cluster.masters, *own_cluster.replicas]
    async with AsyncTestClient(app=create_app(settings)) as client:
        codes = [(await client.post("/rooms", headers=host)).json()["roomId"] for _ in range(9)]
        for node in nodes:
            node.kill()
        for _ in range(3):  # every master's rooms asked for while none answers: from Postgres alone
            for code in codes:
                assert (await client.get(f"/rooms/{code}")).status_code == 200
            await asyncio.sleep(0.3)
        assert (await client.post("/rooms", headers=host)).status_code == 201

        for node in nodes:  # the same ports and cluster configuration, no data
            await asyncio.to_thread(node.start)
        inspect = create_redis(settings, 5)
        try:

            async def cache_writes_back() -> bool:
                code = (await client.post("/rooms", headers=host)).json()["roomId"]
                with contextlib.suppress(*REDIS_UNAVAILABLE):
                    return bool(await inspect.exists(room_key(code)))
                return False

            await eventually(cache_writes_back, 20, "cache writes after the whole cluster came back")
        finally:
            await close_redis(inspect)
