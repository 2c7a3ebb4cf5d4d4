"""Room events end to end: outbox, stream, relay, history consumer, cache sweep and expiry."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import redis.asyncio as redis
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import dead_letter_stream, ended_room_key, room_key
from common.rooms.events import from_stream_fields
from tests.support.faultproxy import Mode, redis_url_via
from tests.support.relay import published, relay_now
from tests.support.settings import make_settings
from tests.support.waiting import eventually
from worker.history import HistoryConsumer
from worker.jobs.cache import sweep_room_cache
from worker.jobs.lifecycle import expire_rooms
from worker.jobs.outbox import relay_outbox
from worker.resources import worker_resources


async def drain(res, name: str = "consumer-1") -> HistoryConsumer:
    """Let one consumer read and record until the stream has nothing new for it."""
    consumer = HistoryConsumer(res, name=name, block_ms=10)
    await consumer.ensure_group()
    while entries := await consumer.read(own_backlog=False):
        await consumer.handle(entries)
    return consumer


async def stream_events(redis_client: redis.Redis, stream: str) -> list:
    return [from_stream_fields(fields) for _, fields in await redis_client.xrange(stream)]


async def history_rows(db: asyncpg.Connection, room_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM room_history WHERE room_id = $1 ORDER BY occurred_at, version", room_id)


# -- publishing -------------------------------------------------------------------------------


async def test_creating_a_room_publishes_room_created(client, host, stream_name, redis_client, db) -> None:
    room = (await client.post("/rooms", headers=host)).json()

    [(_, fields)] = await redis_client.xrange(stream_name)
    assert {k.decode() for k in fields} == {"type", "eventId", "roomId", "occurredAt", "version", "data"}
    event = from_stream_fields(fields)
    assert event.type == "room.created"
    assert event.room_id == room["roomId"]
    assert event.version == 1
    data = json.loads(fields[b"data"])
    assert data["hostId"] == host["X-User-Id"]
    assert data["maxParticipants"] == 4
    assert data["roomId"] == room["roomId"]
    assert json.loads(await redis_client.get(room_key(room["roomId"])))["id"] == data["id"]
    assert event.occurred_at == datetime.fromisoformat(room["createdAt"])

    outbox = await db.fetchrow("SELECT * FROM room_events WHERE room_id = $1", room["roomId"])
    assert outbox["event_id"] == event.event_id
    for _ in range(50):  # the API marks published rows in batches, every 100 ms
        if await db.fetchval("SELECT published_at FROM room_events WHERE room_id = $1", room["roomId"]):
            break
        await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT published_at FROM room_events WHERE room_id = $1", room["roomId"]) is not None


async def test_a_failed_transaction_publishes_nothing(client, host, stream_name, redis_client, db) -> None:
    # Make the outbox insert fail: it comes after the meetings insert, in the same statement.
    await db.execute(
        """
        CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
        CREATE TRIGGER refuse_event BEFORE INSERT ON room_events FOR EACH ROW EXECUTE FUNCTION refuse_event();
        """
    )
    try:
        response = await client.post("/rooms", headers=host)
    finally:
        await db.execute("DROP TRIGGER refuse_event ON room_events; DROP FUNCTION refuse_event();")

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    host_id = uuid.UUID(host["X-User-Id"])
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", host_id) == 0
    assert await redis_client.xlen(stream_name) == 0


async def test_rooms_created_while_redis_is_down_reach_the_stream_history_and_cache_after(
    database_url, redis_url, redis_proxy, stream_name, worker_res, redis_client, db, host
) -> None:
    settings = make_settings(database_url, redis_url_via(redis_url, redis_proxy), stream_name=stream_name)
    redis_proxy.set_mode(Mode.REFUSE)
    async with AsyncTestClient(app=create_app(settings)) as client:
        codes = [(await client.post("/rooms", headers=host)).json()["roomId"] for _ in range(5)]
    assert await redis_client.xlen(stream_name) == 0
    unpublished = await db.fetchval(
        "SELECT count(*) FROM room_events WHERE room_id = any($1) AND published_at IS NULL", codes
    )
    assert unpublished == 5

    redis_proxy.set_mode(Mode.PASS)
    assert await relay_outbox(relay_now(worker_res)) >= 5
    await drain(worker_res)
    await sweep_room_cache({"resources": worker_res})

    events = [e for e in await stream_events(redis_client, stream_name) if e.room_id in codes]
    assert sorted(e.room_id for e in events) == sorted(codes)  # each exactly once
    assert len({e.event_id for e in events}) == 5
    assert [e.room_id for e in events] == codes  # in the order they happened
    for code in codes:
        assert len(await history_rows(db, code)) == 1
        assert await redis_client.exists(room_key(code))
    assert await relay_outbox(relay_now(worker_res)) == 0  # nothing left waiting


async def test_a_relay_repeat_is_recorded_once(client, host, stream_name, worker_res, redis_client, db) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]

    async def marked() -> bool:  # by the API, a moment after its answer (DeferredMarks)
        return bool(await db.fetchval("SELECT published_at IS NOT NULL FROM room_events WHERE room_id = $1", code))

    await eventually(marked, within=5, what="the API marks its event published")
    # A relay that crashed between XADD and marking the row publishes the same event again.
    await db.execute("UPDATE room_events SET published_at = NULL WHERE room_id = $1", code)
    await relay_outbox(relay_now(worker_res))

    events = [e for e in await stream_events(redis_client, stream_name) if e.room_id == code]
    assert len(events) == 2
    assert events[0].event_id == events[1].event_id
    await drain(worker_res)
    assert len(await history_rows(db, code)) == 1


# -- the history consumer ---------------------------------------------------------------------


async def test_an_entry_abandoned_between_read_and_ack_is_claimed_and_counted_once(
    settings_with, stream_name, client, host, redis_client, db
) -> None:
    # The claim idle time must be above the worker's database timeout: a batch may take that long.
    settings = settings_with(claim_idle_seconds=1.0, worker_db_timeout_seconds=0.9)
    today = datetime.now(UTC).date()
    before = await db.fetchval("SELECT rooms_created FROM daily_room_stats WHERE day = $1", today) or 0
    code = (await client.post("/rooms", headers=host)).json()["roomId"]

    async with worker_resources(settings) as res:
        doomed = HistoryConsumer(res, name="doomed", block_ms=10)
        await doomed.ensure_group()
        entries = await doomed.read(own_backlog=False)
        assert len(entries) == 1
        # It records the event, then dies before acknowledging it.
        await doomed._record([from_stream_fields(entries[0][1])])

        await asyncio.sleep(1.1)
        survivor = HistoryConsumer(res, name="survivor", block_ms=10)
        await survivor.claim_abandoned()

    pending = await redis_client.xpending(stream_name, settings.consumer_group)
    assert pending["pending"] == 0
    assert len(await history_rows(db, code)) == 1
    after = await db.fetchval("SELECT rooms_created FROM daily_room_stats WHERE day = $1", today)
    assert after == before + 1


async def test_an_unreadable_entry_goes_to_the_dead_letter_stream(worker_res, stream_name, redis_client) -> None:
    await redis_client.xadd(stream_name, {"type": "room.created", "eventId": "not-a-uuid"})

    await drain(worker_res)

    dead = await redis_client.xrange(dead_letter_stream(stream_name))
    assert len(dead) == 1
    assert dead[0][1][b"eventId"] == b"not-a-uuid"
    assert b"not a room event" in dead[0][1][b"reason"]
    assert (await redis_client.xpending(stream_name, worker_res.settings.consumer_group))["pending"] == 0


async def test_an_entry_delivered_too_often_is_dead_lettered(
    settings_with, stream_name, client, host, redis_client
) -> None:
    settings = settings_with(claim_idle_seconds=1.0, worker_db_timeout_seconds=0.9, max_deliveries=2)
    await client.post("/rooms", headers=host)
    async with worker_resources(settings) as res:
        consumer = HistoryConsumer(res, name="unlucky", block_ms=10)
        await consumer.ensure_group()
        await consumer.read(own_backlog=False)  # delivery 1, never acknowledged
        await asyncio.sleep(1.1)
        await redis_client.xclaim(
            stream_name, settings.consumer_group, "unlucky", 0, [(await redis_client.xrange(stream_name))[0][0]]
        )  # delivery 2
        await asyncio.sleep(1.1)
        await consumer.claim_abandoned()  # delivery 3: over the limit

    assert await redis_client.xlen(dead_letter_stream(stream_name)) == 1
    assert (await redis_client.xpending(stream_name, settings.consumer_group))["pending"] == 0


# -- the cache sweep and expiry ---------------------------------------------------------------


async def test_after_a_flush_one_sweep_restores_every_live_room(client, host, worker_res, redis_client, db) -> None:
    codes = [(await client.post("/rooms", headers=host)).json()["roomId"] for _ in range(30)]
    ended = codes.pop()
    await db.execute("UPDATE meetings SET is_active = false WHERE room_id = $1", ended)
    await db.execute("UPDATE meetings SET expires_at = now() + interval '1 hour' WHERE room_id = $1", codes[0])
    # What a flush does to these rooms (the test server may hold other data that is not ours).
    await redis_client.delete(*(room_key(code) for code in [*codes, ended]))

    restored = await sweep_room_cache({"resources": worker_res})

    assert restored >= len(codes)
    for code in codes:
        assert await redis_client.exists(room_key(code))
    assert 0 < await redis_client.pttl(room_key(codes[0])) <= 3_600_000
    assert 3_600_000 < await redis_client.pttl(room_key(codes[1])) <= 86_400_000
    assert not await redis_client.exists(room_key(ended))
    assert await sweep_room_cache({"resources": worker_res}) == 0  # nothing missing any more


async def test_expired_rooms_end_publish_and_answer_410(
    client, host, worker_res, stream_name, redis_client, db
) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await db.execute(
        "UPDATE meetings SET created_at = now() - interval '2 days', starts_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second' WHERE room_id = $1",
        code,
    )
    await published(db, code)  # else the end waits for the relay, behind the create

    assert await expire_rooms({"resources": worker_res}) >= 1

    assert await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", code) is False
    ended = [e for e in await stream_events(redis_client, stream_name) if e.type == "room.ended" and e.room_id == code]
    assert len(ended) == 1
    assert ended[0].data.reason == "expired"
    assert ended[0].version == 2
    assert not await redis_client.exists(room_key(code))
    assert (await client.get(f"/rooms/{code}")).status_code == 410
    await expire_rooms({"resources": worker_res})
    assert len([e for e in await stream_events(redis_client, stream_name) if e.room_id == code]) == 2  # ended once


# -- history and stats over HTTP ------------------------------------------------------------


async def test_room_history_lists_its_lifecycle_oldest_first(client, host, worker_res, db) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await db.execute(
        "UPDATE meetings SET created_at = now() - interval '2 days', starts_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second' WHERE room_id = $1",
        code,
    )
    await published(db, code)  # else the end waits for the relay, behind the create
    await expire_rooms({"resources": worker_res})
    await drain(worker_res)

    response = await client.get(f"/rooms/{code.upper()}/history", headers=host)

    assert response.status_code == 200
    body = response.json()
    assert body["roomId"] == code
    assert [(e["type"], e["version"]) for e in body["events"]] == [("room.created", 1), ("room.ended", 2)]
    assert body["events"][1]["data"]["reason"] == "expired"
    assert (await client.get("/rooms/qqq-qqqq-qqq/history", headers=host)).status_code == 404
    assert (await client.get("/rooms/nope/history", headers=host)).status_code == 400


async def test_only_the_host_reads_a_rooms_history(client, host) -> None:
    """The events name the host and every change: knowing the code is not enough to read them."""
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    anonymous = await client.get(f"/rooms/{code}/history")
    someone_else = await client.get(f"/rooms/{code}/history", headers={"X-User-Id": str(uuid.uuid4())})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "missing_user_id")
    assert (someone_else.status_code, someone_else.json()["error"]) == (403, "not_room_host")
    assert (await client.get(f"/rooms/{code}/history", headers=host)).status_code == 200


ADMIN = str(uuid.uuid4())


@pytest.fixture
async def analyst(settings_with) -> AsyncIterator[AsyncTestClient]:
    """A client acting as one of ROOMS_ADMIN_USER_IDS, who may read the statistics."""
    other_admin = str(uuid.uuid4())
    async with AsyncTestClient(app=create_app(settings_with(admin_user_ids=f"{other_admin}, {ADMIN}"))) as client:
        client.headers["X-User-Id"] = ADMIN
        yield client


async def test_only_admins_read_the_statistics(analyst, host) -> None:
    assert (await analyst.get("/stats/daily")).status_code == 200
    anonymous = await analyst.get("/stats/daily", headers={"X-User-Id": ""})
    not_admin = await analyst.get("/stats/daily", headers=host)
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "missing_user_id")
    assert (not_admin.status_code, not_admin.json()["error"]) == (403, "not_admin")


async def test_daily_stats_count_rooms_and_distinct_hosts(analyst, worker_res) -> None:
    today = datetime.now(UTC).date().isoformat()
    before = (await analyst.get(f"/stats/daily?from={today}&to={today}")).json()["days"][0]
    hosts = [{"X-User-Id": str(uuid.uuid4())} for _ in range(2)]
    for headers in (hosts[0], hosts[0], hosts[1]):
        await analyst.post("/rooms", headers=headers)
    await drain(worker_res)

    body = (await analyst.get(f"/stats/daily?from={today}&to={today}")).json()

    assert body["from"] == body["to"] == today
    [day] = body["days"]
    assert day["day"] == today
    assert day["roomsCreated"] == before["roomsCreated"] + 3
    assert day["distinctHosts"] == before["distinctHosts"] + 2


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-13-01&to=2026-12-01",
        "from=yesterday",
        "to=null",
        "from=20261125",
        "from=2026-W48-3",
        "from=2026-11-20&to=2026-11-10",
        "from=2020-01-01&to=2026-01-01",
    ],
)
async def test_daily_stats_refuse_bad_ranges(analyst, query) -> None:
    response = await analyst.get(f"/stats/daily?{query}")
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_date", "invalid_date_range"}


@pytest.mark.parametrize(
    ("query", "days"),
    [
        # The default week before `to` would start before the calendar does: it starts on its first day.
        ("to=0001-01-03", ("0001-01-01", "0001-01-03")),
        ("from=9999-12-30&to=9999-12-31", ("9999-12-30", "9999-12-31")),
    ],
)
async def test_daily_stats_at_the_ends_of_the_calendar(analyst, query, days) -> None:
    response = await analyst.get(f"/stats/daily?{query}")
    assert response.status_code == 200
    body = response.json()
    assert (body["from"], body["to"]) == days
    assert [day["day"] for day in body["days"]][:: len(body["days"]) - 1] == list(days)


async def test_daily_stats_default_to_the_last_week(analyst) -> None:
    body = (await analyst.get("/stats/daily")).json()
    assert len(body["days"]) == 7
    assert body["to"] == datetime.now(UTC).date().isoformat()


async def test_the_relay_applies_what_the_api_could_not(
    database_url, redis_url, redis_proxy, stream_name, worker_res, redis_client, host
) -> None:
    settings = make_settings(database_url, redis_url_via(redis_url, redis_proxy), stream_name=stream_name)
    async with AsyncTestClient(app=create_app(settings)) as client:
        ended = (await client.post("/rooms", headers=host)).json()["roomId"]
        changed = (await client.post("/rooms", headers=host)).json()["roomId"]
        redis_proxy.set_mode(Mode.REFUSE)
        assert (await client.delete(f"/rooms/{ended}", headers=host)).status_code == 204
        assert (await client.patch(f"/rooms/{changed}", headers=host, json={"maxParticipants": 2})).status_code == 200
    # Redis still holds what it held before: the API's writes after commit did not reach it.
    assert await redis_client.exists(room_key(ended))
    assert json.loads(await redis_client.get(room_key(changed)))["maxParticipants"] == 4

    redis_proxy.set_mode(Mode.PASS)
    await relay_outbox(relay_now(worker_res))

    assert not await redis_client.exists(room_key(ended))
    assert await redis_client.exists(ended_room_key(ended))
    assert json.loads(await redis_client.get(room_key(changed)))["maxParticipants"] == 2
    types = {(e.room_id, e.type) for e in await stream_events(redis_client, stream_name)}
    assert {(ended, "room.ended"), (changed, "room.updated")} <= types


async def test_ending_again_repairs_redis(client, host, redis_client, db) -> None:
    code = (await client.post("/rooms", headers=host)).json()["roomId"]
    await client.delete(f"/rooms/{code}", headers=host)
    # As if the first DELETE's Redis write had been lost.
    await redis_client.delete(ended_room_key(code))
    await redis_client.set(room_key(code), b'{"stale": true}')

    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204

    assert not await redis_client.exists(room_key(code))
    assert await redis_client.exists(ended_room_key(code))
