"""The database defines the room object and the events' data (room_event_data): every writer of
`room:{roomId}` and of the stream sends the JSON Postgres makes as it is, so a field this code does
not know (one a newer release's migration added) is kept, not dropped, through every path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from common.redis.keys import room_key
from common.rooms.model import RoomView
from common.signaling.contract import JoinContract
from tests.support.relay import relay_now
from tests.support.rooms import create, raw_data_of
from tests.support.waiting import eventually
from worker.jobs.cache import restore_room_cache, sweep_room_cache
from worker.jobs.outbox import relay_outbox

FUTURE = {"futureField": "kept"}

# The function a newer release would install: today's definition plus a field this code lacks.
_WITH_FUTURE_FIELD = f"""
CREATE OR REPLACE FUNCTION room_event_data(m meetings, reason text DEFAULT NULL, participant text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT room_event_data_released(m, reason, participant) || '{json.dumps(FUTURE)}'::jsonb $$
"""


@pytest.fixture
async def future_field(db) -> AsyncIterator[None]:
    """room_event_data with one more field, for this test only: the session's database is shared by
    the tests that follow, so the released definition is put back whatever happens."""
    released = await db.fetchval("SELECT pg_get_functiondef('room_event_data(meetings, text, text)'::regprocedure)")
    assert "public.room_event_data(" in released
    await db.execute(released.replace("public.room_event_data(", "public.room_event_data_released(", 1))
    await db.execute(_WITH_FUTURE_FIELD)
    try:
        yield
    finally:
        await db.execute(released)
        await db.execute("DROP FUNCTION room_event_data_released(meetings, text, text)")


async def cached_object(redis_client, code: str) -> dict[str, Any]:
    raw = await redis_client.get(room_key(code))
    assert raw is not None, f"room:{code} is not cached"
    cached: dict[str, Any] = json.loads(raw)
    return cached


async def test_a_field_the_code_does_not_know_reaches_every_room_object_and_event(
    future_field, client, host, worker_res, redis_client, stream_name, db
) -> None:
    code = (await create(client, host, maxParticipants=3))["roomId"]
    # Create: the object the API cached and the event it appended.
    assert (await cached_object(redis_client, code)).items() >= FUTURE.items()
    [created] = await raw_data_of(redis_client, stream_name, code, "room.created")
    assert created.items() >= FUTURE.items()

    # PATCH: the new object and its event.
    patched = await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 2})
    assert patched.status_code == 200, patched.text
    assert (await cached_object(redis_client, code)).items() >= {"maxParticipants": 2, "version": 2, **FUTURE}.items()
    [updated] = await raw_data_of(redis_client, stream_name, code, "room.updated")
    assert updated.items() >= FUTURE.items()

    # A validate that misses Redis caches the room again; its answer is the client's view, as ever.
    await redis_client.delete(room_key(code))
    answer = await client.get(f"/rooms/{code}", headers=host)
    assert answer.status_code == 200
    assert set(answer.json()) == set(RoomView.__struct_encode_fields__)
    assert answer.json()["expiresAt"].endswith("Z")
    assert (await cached_object(redis_client, code)).items() >= {"version": 2, **FUTURE}.items()
    # Served from that object, the answer is the same.
    assert (await client.get(f"/rooms/{code}", headers=host)).json() == answer.json()
    # Signaling reads the object the database wrote: the limit is a number it admits by.
    joined = await JoinContract(redis_client).join(code, "someone", 30_000)
    assert (joined.outcome, joined.max_participants) == ("admitted", 2)

    # The worker's restore of one room, then its sweep of all.
    await redis_client.delete(room_key(code))
    assert await restore_room_cache({"resources": worker_res, "job_try": 1}, code)
    assert (await cached_object(redis_client, code)).items() >= FUTURE.items()
    await redis_client.delete(room_key(code))
    assert await sweep_room_cache({"resources": worker_res}) >= 1
    assert (await cached_object(redis_client, code)).items() >= {"version": 2, **FUTURE}.items()

    # The relay: events left unpublished (the API's process died before publishing them) go out
    # with the database's data, and put the room object back.
    await redis_client.delete(room_key(code))

    async def marked() -> bool:  # the API marks what it published a moment later, in the background
        query = "SELECT count(*) FROM room_events WHERE room_id = $1 AND published_at IS NULL"
        return await db.fetchval(query, code) == 0

    await eventually(marked, 10, "the API's marks of the room's events")  # else one could land after the next line
    await db.execute("UPDATE room_events SET published_at = NULL WHERE room_id = $1", code)
    assert await relay_outbox(relay_now(worker_res)) >= 2
    relayed = await raw_data_of(redis_client, stream_name, code, "room.updated")
    assert len(relayed) == 2
    assert all(data.items() >= FUTURE.items() for data in relayed)
    assert (await cached_object(redis_client, code)).items() >= {"version": 2, **FUTURE}.items()

    # The end's event carries it too (with its reason); the object is gone.
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
    [ended] = await raw_data_of(redis_client, stream_name, code, "room.ended")
    assert ended.items() >= {"reason": "deleted", **FUTURE}.items()
    assert not await redis_client.exists(room_key(code))


async def test_the_cached_object_is_the_databases_json_with_no_end_reason(
    client, host, redis_client, db, settings
) -> None:
    code = (await create(client, host, metadata={"title": "Weekly sync"}))["roomId"]
    data = await db.fetchval("SELECT room_event_data(m)::text FROM meetings m WHERE room_id = $1", code)

    # As the database made it, with the moment join.lua admits from, which depends on this deployment.
    cached = (await redis_client.get(room_key(code))).decode()
    start = datetime.fromisoformat(json.loads(data)["startsAt"])
    opens = int(start.timestamp() * 1000) - settings.early_join_seconds * 1000
    assert cached == data[:-1] + f',"opensAtMs":{opens}}}'
    assert "reason" not in json.loads(data)
