"""The history consumer through a Postgres outage: only an entry's own failures may send it to the
dead-letter stream, however long the outage and however many consumers try meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from common.redis.keys import dead_letter_stream
from common.settings import Settings
from tests.support.faultproxy import FaultProxy, Mode, postgres_url_via
from tests.support.waiting import eventually
from worker.history import HistoryConsumer
from worker.resources import worker_resources

CLAIM_IDLE = 1.0
# One batch: one consumer holds it through the outage while the two others, with nothing to read,
# go round their loops trying to claim what it holds.
ROOMS = BATCH = 5


@contextlib.asynccontextmanager
async def consumers_running(settings: Settings, count: int) -> AsyncIterator[list[HistoryConsumer]]:
    """`count` consumers running their real loops, each with resources of its own (as processes have)."""
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        consumers = []
        for i in range(count):
            res = await stack.enter_async_context(worker_resources(settings))
            consumers.append(HistoryConsumer(res, name=f"worker-{i}", block_ms=100))
        tasks = [asyncio.ensure_future(consumer.run(stop)) for consumer in consumers]
        try:
            yield consumers
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


# One topology: the outage is Postgres's, and the holds it tests (XCLAIM on the one stream key) are the
# same commands to one node on every topology; test_events.py runs the consumer on all three.
@pytest.mark.one_topology
async def test_a_postgres_outage_sends_no_valid_entry_to_the_dead_letters(
    settings_with, database_url, postgres_proxy: FaultProxy, client, host, redis_client, db, stream_name
) -> None:
    codes = [(await client.post("/rooms", headers=host)).json()["roomId"] for _ in range(ROOMS)]
    assert await redis_client.xlen(stream_name) == ROOMS
    settings = settings_with(
        database_url=postgres_url_via(database_url, postgres_proxy),
        claim_idle_seconds=CLAIM_IDLE,
        worker_db_timeout_seconds=0.5,  # below the claim idle time, as the settings require
        consumer_batch_size=BATCH,
        max_deliveries=2,  # so that one extra delivery too many shows
    )
    group = settings.consumer_group
    postgres_proxy.set_mode(Mode.REFUSE)

    async with consumers_running(settings, 3):

        async def one_holds_the_batch() -> bool:
            return (await redis_client.xpending(stream_name, group))["pending"] == ROOMS

        await eventually(one_holds_the_batch, within=10, what="a consumer reads the batch and waits out the outage")
        # The outage itself: more than three claim idle times.
        await asyncio.sleep(3.5 * CLAIM_IDLE)

        assert await redis_client.xlen(dead_letter_stream(stream_name)) == 0
        pending = await redis_client.xpending_range(stream_name, group, min="-", max="+", count=100)
        assert len(pending) == ROOMS
        assert {entry["times_delivered"] for entry in pending} == {1}, "an outage counted as a failed delivery"

        postgres_proxy.set_mode(Mode.PASS)

        async def all_recorded() -> bool:
            recorded = await db.fetchval("SELECT count(*) FROM room_history WHERE room_id = ANY($1)", codes)
            left = (await redis_client.xpending(stream_name, group))["pending"]
            return recorded == ROOMS and left == 0

        await eventually(all_recorded, within=15, what="every event recorded and acknowledged after the outage")

    assert await redis_client.xlen(dead_letter_stream(stream_name)) == 0
    rows = await db.fetch("SELECT room_id, count(*) AS n FROM room_history WHERE room_id = ANY($1) GROUP BY 1", codes)
    assert sorted(row["room_id"] for row in rows) == sorted(codes)
    assert {row["n"] for row in rows} == {1}  # each once
