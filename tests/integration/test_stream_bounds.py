"""The event stream is bounded twice: by length (ROOMS_STREAM_MAX_LENGTH, on every XADD) and by age
(ROOMS_STREAM_RETENTION_SECONDS, trimmed by the relay once a run)."""

from __future__ import annotations

import time

from litestar.testing import AsyncTestClient

from api.app import create_app
from common.rooms.events import from_stream_fields
from tests.support.relay import relay_now
from tests.support.rooms import create
from worker.jobs.outbox import relay_outbox

# Redis trims a stream by whole nodes only (`~`), and a node holds at most 100 entries by default
# (stream-node-max-entries): what an approximate bound may leave above it.
_NODE_ENTRIES = 100


async def test_the_stream_stays_near_its_cap(settings_with, host, redis_client, stream_name) -> None:
    cap = 50
    settings = settings_with(stream_max_length=cap, create_limit_per_minute=0)
    async with AsyncTestClient(app=create_app(settings)) as client:
        codes = [(await create(client, host))["roomId"] for _ in range(4 * cap + 2 * _NODE_ENTRIES)]

    length = await redis_client.xlen(stream_name)
    assert cap <= length <= cap + _NODE_ENTRIES
    [(_, newest)] = await redis_client.xrevrange(stream_name, count=1)
    assert from_stream_fields(newest).room_id == codes[-1]  # what goes is the oldest


async def test_the_relay_trims_entries_older_than_the_retention(
    client, host, redis_client, stream_name, worker_res
) -> None:
    old = 2 * _NODE_ENTRIES + 10
    for n in range(1, old + 1):  # a day and more ago, as ids go: the retention is at most 30 days
        await redis_client.xadd(stream_name, {"old": str(n)}, id=f"{n}-0")
    code = (await create(client, host))["roomId"]

    await relay_outbox(relay_now(worker_res))

    floor_ms = int((time.time() - worker_res.settings.stream_retention_seconds) * 1000)
    entries = await redis_client.xrange(stream_name)
    left = [entry_id for entry_id, _ in entries if int(entry_id.split(b"-")[0]) < floor_ms]
    assert len(left) < _NODE_ENTRIES
    assert any(fields.get(b"roomId") == code.encode() for _, fields in entries)  # the new one stays
