"""A value of another type at one room's keys (something else wrote there) fails that room alone: the
relay, the sweep and the cache writes go on for the other rooms, and no event reaches the stream twice."""

from __future__ import annotations

import json

from common.redis.keys import ended_room_key, room_key
from common.rooms.events import from_stream_fields
from tests.support.relay import relay_now
from tests.support.rooms import create
from tests.support.waiting import eventually
from worker.jobs.cache import sweep_room_cache
from worker.jobs.outbox import relay_outbox

_REPLACED = "cache_foreign_values_replaced_total"


async def entries_by_event(redis_client, stream_name: str, event_ids: set[str]) -> dict[str, int]:
    """How many stream entries each of `event_ids` has."""
    counts = dict.fromkeys(event_ids, 0)
    for _, fields in await redis_client.xrange(stream_name):
        event = from_stream_fields(fields)
        if str(event.event_id) in counts:
            counts[str(event.event_id)] += 1
    return counts


async def rooms_waiting_in_the_outbox(client, host, db, redis_client, stream_name, count: int) -> tuple[list, set]:
    """`count` new rooms whose `room.created` waits in the outbox, as if Redis had not taken it, and
    whose keys are gone from Redis; their codes and event ids."""
    codes = [(await create(client, host))["roomId"] for _ in range(count)]

    async def marked() -> bool:  # by the API, a moment after its answers
        waiting = "SELECT count(*) FROM room_events WHERE room_id = any($1) AND published_at IS NULL"
        return await db.fetchval(waiting, codes) == 0

    await eventually(marked, within=10, what="the API marks its events published")
    rows = await db.fetch(
        "UPDATE room_events SET published_at = NULL WHERE room_id = any($1) RETURNING event_id", codes
    )
    await redis_client.delete(stream_name)
    for code in codes:
        await redis_client.delete(room_key(code))
    return codes, {str(row["event_id"]) for row in rows}


async def test_a_foreign_value_at_one_room_key_does_not_stall_the_relay(
    client, host, db, redis_client, stream_name, worker_res
) -> None:
    codes, event_ids = await rooms_waiting_in_the_outbox(client, host, db, redis_client, stream_name, 3)
    bad = codes[1]
    await redis_client.sadd(room_key(bad), "written by something else")

    await relay_outbox(relay_now(worker_res))

    assert await entries_by_event(redis_client, stream_name, event_ids) == dict.fromkeys(event_ids, 1)
    waiting = await db.fetchval(
        "SELECT count(*) FROM room_events WHERE room_id = any($1) AND published_at IS NULL", codes
    )
    assert waiting == 0
    for code in codes:
        assert json.loads(await redis_client.get(room_key(code)))["roomId"] == code
    assert worker_res.metrics.count(_REPLACED) == 1

    await relay_outbox(relay_now(worker_res))  # nothing of these left to publish: nothing added
    assert await entries_by_event(redis_client, stream_name, event_ids) == dict.fromkeys(event_ids, 1)


async def test_the_sweep_restores_every_room_around_a_foreign_value(client, host, db, redis_client, worker_res) -> None:
    codes = [(await create(client, host))["roomId"] for _ in range(3)]
    for code in codes:
        await redis_client.delete(room_key(code))
    await redis_client.hset(room_key(codes[0]), "field", "written by something else")

    assert await sweep_room_cache({"resources": worker_res}) >= 3

    for code in codes:
        assert json.loads(await redis_client.get(room_key(code)))["roomId"] == code
    assert worker_res.metrics.count(_REPLACED) == 1


async def test_a_foreign_value_at_the_ended_mark_does_not_keep_a_live_room_out(
    client, host, redis_client, worker_res
) -> None:
    code = (await create(client, host))["roomId"]
    await redis_client.delete(room_key(code))
    await redis_client.rpush(ended_room_key(code), "written by something else")

    assert await sweep_room_cache({"resources": worker_res}) >= 1

    assert json.loads(await redis_client.get(room_key(code)))["roomId"] == code
    assert worker_res.metrics.count(_REPLACED) == 1
    assert (await client.get(f"/rooms/{code}")).status_code == 200
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
    assert (await client.get(f"/rooms/{code}")).status_code == 410
    assert not await redis_client.exists(room_key(code))
