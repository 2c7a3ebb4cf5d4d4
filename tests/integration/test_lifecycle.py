"""Hosts manage their rooms: list, change the limit, end; and POST /rooms with an Idempotency-Key."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest

from common.redis.keys import room_key
from tests.support.rooms import create, events_of

# A cursor whose timestamp, once in UTC, is past the last moment a datetime can hold.
OUT_OF_TIME = base64.urlsafe_b64encode(b"9999-12-31T23:59:59-05:00|6f1c1a3e-9a53-4c1e-8a53-1b2c3d4e5f60").decode()


# -- GET /rooms ---------------------------------------------------------------------------------


async def test_lists_the_callers_rooms_newest_first_in_pages(client, host, db) -> None:
    made = [(await create(client, host))["roomId"] for _ in range(5)]
    await create(client, {"X-User-Id": str(uuid.uuid4())})  # someone else's

    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/rooms?{query}", headers=host)).json()
        assert len(page["rooms"]) <= 2
        seen += [room["roomId"] for room in page["rooms"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_lists_by_status(client, host) -> None:
    live, ended = (await create(client, host))["roomId"], (await create(client, host))["roomId"]
    assert (await client.delete(f"/rooms/{ended}", headers=host)).status_code == 204

    def codes(page: dict) -> list[str]:
        return [room["roomId"] for room in page["rooms"]]

    assert codes((await client.get("/rooms?status=active", headers=host)).json()) == [live]
    ended_page = (await client.get("/rooms?status=ended", headers=host)).json()
    assert codes(ended_page) == [ended]
    assert ended_page["rooms"][0]["status"] == "ended"
    assert codes((await client.get("/rooms?status=all", headers=host)).json()) == [ended, live]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "invalid_limit"),
        ("limit=ten", "invalid_request"),
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("cursor=", "invalid_cursor"),  # the schema's minLength 1: a client sending a null nextCursor as ""
        ("cursor=MjAyNnxub3BlfA", "invalid_cursor"),
        (f"cursor={OUT_OF_TIME}", "invalid_cursor"),
        ("status=deleted", "invalid_request"),
    ],
)
async def test_bad_list_queries_are_400(client, host, query, error) -> None:
    response = await client.get(f"/rooms?{query}", headers=host)
    assert response.status_code == 400
    assert response.json()["error"] == error


async def test_a_large_limit_is_capped(client, host) -> None:
    for _ in range(3):
        await create(client, host)
    page = (await client.get("/rooms?limit=100000", headers=host)).json()
    assert len(page["rooms"]) == 3
    assert page["nextCursor"] is None


async def test_listing_needs_a_user(client) -> None:
    assert (await client.get("/rooms")).status_code == 401
    assert (await client.get("/rooms", headers={"X-User-Id": "x"})).status_code == 401


# -- PATCH /rooms/{roomId} ------------------------------------------------------------------------


async def test_the_host_changes_the_limit_everywhere(client, host, redis_client, stream_name, db) -> None:
    code = (await create(client, host))["roomId"]
    ttl_before = await redis_client.pttl(room_key(code))

    response = await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 2})

    assert response.status_code == 200
    assert response.json()["maxParticipants"] == 2
    assert await db.fetchval("SELECT max_participants FROM meetings WHERE room_id = $1", code) == 2
    cached = json.loads(await redis_client.get(room_key(code)))
    assert cached["maxParticipants"] == 2
    assert abs(await redis_client.pttl(room_key(code)) - ttl_before) < 5_000  # TTL kept
    assert (await client.get(f"/rooms/{code}")).json()["maxParticipants"] == 2
    updated = [e for e in await events_of(redis_client, stream_name, code) if e.type == "room.updated"]
    assert len(updated) == 1
    assert updated[0].version == 2
    assert updated[0].data.max_participants == 2


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"maxParticipants": 1}, 422, "max_participants_out_of_range"),
        ({"maxParticipants": 5}, 422, "max_participants_out_of_range"),
        ({"maxParticipants": "3"}, 400, "invalid_body"),
        ({}, 400, "invalid_body"),
        ({"maxParticipants": 3, "x": 1}, 400, "invalid_body"),
    ],
)
async def test_patch_refuses_bad_bodies(client, host, db, body, status, error) -> None:
    code = (await create(client, host))["roomId"]
    response = await client.patch(f"/rooms/{code}", headers=host, json=body)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code) == 1


async def test_patch_is_for_the_host_of_a_live_room(client, host, db) -> None:
    code = (await create(client, host))["roomId"]
    stranger = {"X-User-Id": str(uuid.uuid4())}
    body = {"maxParticipants": 3}

    assert (await client.patch(f"/rooms/{code}", headers=stranger, json=body)).status_code == 403
    assert (await client.patch("/rooms/qqq-qqqq-qqq", headers=host, json=body)).status_code == 404
    assert (await client.patch(f"/rooms/{code}", json=body)).status_code == 401
    await client.delete(f"/rooms/{code}", headers=host)
    gone = await client.patch(f"/rooms/{code}", headers=host, json=body)
    assert gone.status_code == 410
    assert await db.fetchval("SELECT max_participants FROM meetings WHERE room_id = $1", code) == 4


# -- DELETE /rooms/{roomId} -----------------------------------------------------------------------


async def test_the_host_ends_a_room(client, host, redis_client, stream_name, db) -> None:
    code = (await create(client, host))["roomId"]

    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204  # harmless again

    assert await db.fetchval("SELECT is_active FROM meetings WHERE room_id = $1", code) is False
    assert not await redis_client.exists(room_key(code))
    assert (await client.get(f"/rooms/{code}")).status_code == 410
    ended = [e for e in await events_of(redis_client, stream_name, code) if e.type == "room.ended"]
    assert len(ended) == 1  # the repeat published nothing
    assert ended[0].data.reason == "deleted"


async def test_only_the_host_ends_a_room(client, host, redis_client) -> None:
    code = (await create(client, host))["roomId"]
    stranger = {"X-User-Id": str(uuid.uuid4())}
    response = await client.delete(f"/rooms/{code}", headers=stranger)
    assert response.status_code == 403
    assert response.json()["error"] == "not_room_host"
    assert await redis_client.exists(room_key(code))
    assert (await client.delete("/rooms/qqq-qqqq-qqq", headers=host)).status_code == 404


async def test_a_change_waits_behind_an_unpublished_event_of_its_room(client, host, redis_client, stream_name, db):
    code = (await create(client, host))["roomId"]
    for _ in range(50):  # let the API's batched marking pass first
        if await db.fetchval("SELECT published_at FROM room_events WHERE room_id = $1", code):
            break
        await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT published_at FROM room_events WHERE room_id = $1", code) is not None
    # As if room.created had not reached the stream yet (Redis was down when it was made).
    await db.execute("UPDATE room_events SET published_at = NULL WHERE room_id = $1", code)
    await redis_client.delete(stream_name)

    await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 3})

    assert await events_of(redis_client, stream_name, code) == []  # left to the relay, which keeps order
    assert json.loads(await redis_client.get(room_key(code)))["maxParticipants"] == 3  # the cache is current
    waiting = await db.fetch(
        "SELECT type FROM room_events WHERE room_id = $1 AND published_at IS NULL ORDER BY id", code
    )
    assert [r["type"] for r in waiting] == ["room.created", "room.updated"]


# -- Idempotency-Key ------------------------------------------------------------------------------


async def test_a_retried_create_returns_the_same_room(client, host, db) -> None:
    headers = {**host, "Idempotency-Key": "create-1"}
    first = await client.post("/rooms", headers=headers, json={"maxParticipants": 3})
    again = await client.post("/rooms", headers=headers, json={"maxParticipants": 3})

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["location"] == first.headers["location"]
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    count = await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"]))
    assert count == 1


async def test_the_same_key_with_another_body_is_422(client, host) -> None:
    headers = {**host, "Idempotency-Key": "create-2"}
    await client.post("/rooms", headers=headers, json={"maxParticipants": 3})
    response = await client.post("/rooms", headers=headers, json={"maxParticipants": 2})
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"


async def test_keys_belong_to_their_host(client, host) -> None:
    other = {"X-User-Id": str(uuid.uuid4()), "Idempotency-Key": "shared"}
    mine = (await client.post("/rooms", headers={**host, "Idempotency-Key": "shared"})).json()
    theirs = (await client.post("/rooms", headers=other)).json()
    assert mine["roomId"] != theirs["roomId"]


async def test_concurrent_retries_with_one_key_create_one_room(client, host, db) -> None:
    headers = {**host, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(*(client.post("/rooms", headers=headers) for _ in range(20)))

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["roomId"] for r in responses}) == 1
    count = await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"]))
    assert count == 1


async def test_an_expired_key_makes_a_new_room(client, host, db) -> None:
    headers = {**host, "Idempotency-Key": "old"}
    first = (await client.post("/rooms", headers=headers)).json()["roomId"]
    await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
    second = (await client.post("/rooms", headers=headers)).json()["roomId"]
    assert first != second


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"has space", "caf\u00e9".encode()])
async def test_malformed_keys_are_400(client, host, key) -> None:
    response = await client.post("/rooms", headers={**host, "Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_idempotency_key"
