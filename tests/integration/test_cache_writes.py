"""Writers of room:{roomId} holding an older read never undo a newer change or revive an ended room."""

from __future__ import annotations

import json
import os

import pytest

from common.metrics import Metrics
from common.redis.guarded import GuardedRedis
from common.redis.keys import room_key
from common.redis.room_cache import CACHE_SCRIPTS, RoomCache
from common.rooms.model import CachedRoom, Room


@pytest.fixture
def cache(redis_client, settings) -> RoomCache:
    metrics = Metrics()
    return RoomCache(
        GuardedRedis(redis_client, settings, metrics, timeout=5, scripts=CACHE_SCRIPTS),
        metrics,
        settings.early_join_seconds,
    )


async def stored_room(db, code: str) -> CachedRoom:
    row = await db.fetchrow(
        "SELECT id, room_id, host_id, max_participants, created_at, expires_at, version, "
        "room_event_data(meetings)::text AS data FROM meetings WHERE room_id = $1",
        code,
    )
    data = row["data"]
    return CachedRoom(Room(**{key: value for key, value in dict(row).items() if key != "data"}), data)


async def test_an_older_read_does_not_overwrite_a_newer_limit(client, host, db, cache, redis_client) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    before_patch = await stored_room(db, code)  # what a slow GET read from Postgres
    assert (await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 2})).status_code == 200

    # The slow GET's write arrives late: accepted, but changes nothing.
    assert await cache.write(put=[before_patch]) is not None

    cached = json.loads(await redis_client.get(room_key(code)))
    assert (cached["maxParticipants"], cached["version"]) == (2, 2)


async def test_an_ended_room_is_not_cached_again(client, host, db, cache, redis_client) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    live_read = await stored_room(db, code)
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204

    await cache.write(put=[live_read])  # a GET that read the room just before it ended
    assert await cache.write(put=[live_read], only_if_absent=True) == 0  # the sweep, with a page read before the end

    assert not await redis_client.exists(room_key(code))
    assert (await client.get(f"/rooms/{code}")).status_code == 410


async def test_the_sweep_never_replaces_an_object(client, host, db, cache, redis_client) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    older = await stored_room(db, code)
    await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 3})

    assert await cache.write(put=[older], only_if_absent=True) == 0
    assert json.loads(await redis_client.get(room_key(code)))["maxParticipants"] == 3


@pytest.mark.skipif("ROOMS_TEST_REDIS_URL" in os.environ, reason="flushes the script cache of its own server only")
async def test_writes_go_on_after_redis_lost_its_scripts(client, host, redis_client, stream_name) -> None:
    await redis_client.script_flush()  # as after a Redis restart
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    assert await redis_client.exists(room_key(code))
    assert await redis_client.xlen(stream_name) == 1  # only the script call ran again, not the whole batch
