"""Creating and validating rooms through the HTTP API, against real Postgres and Redis."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import room_key
from common.rooms.codes import generate_room_code
from common.settings import Settings
from tests.support.metrics import metric_value
from tests.support.rooms import create

CODE = re.compile(r"^[a-z]{3}-[a-z]{4}-[a-z]{3}$")
ROOM_FIELDS = {
    "roomId",
    "hostId",
    "maxParticipants",
    "createdAt",
    "startsAt",
    "expiresAt",
    "status",
    "metadata",
    "cohostIds",
    "emptyTimeoutSeconds",
    "unusedTimeoutSeconds",
}


# -- POST /rooms ------------------------------------------------------------------------------


async def test_create_stores_caches_and_answers(client, host, db, redis_client) -> None:
    response = await client.post("/rooms", headers=host)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == ROOM_FIELDS
    assert CODE.match(body["roomId"])
    assert body["hostId"] == host["X-User-Id"]
    assert body["maxParticipants"] == 4
    assert body["status"] == "active"
    assert body["startsAt"] == body["createdAt"]  # without a start of its own, it opens at once
    assert response.headers["location"] == f"/rooms/{body['roomId']}"
    lifetime = datetime.fromisoformat(body["expiresAt"]) - datetime.fromisoformat(body["createdAt"])
    assert lifetime.total_seconds() == 86400

    row = await db.fetchrow("SELECT * FROM meetings WHERE room_id = $1", body["roomId"])
    assert row is not None
    assert str(row["host_id"]) == host["X-User-Id"]
    assert row["is_active"] is True
    assert row["max_participants"] == 4

    cached = json.loads(await redis_client.get(room_key(body["roomId"])))
    # The three names Signaling reads, exactly.
    assert cached["id"] == str(row["id"])
    assert cached["hostId"] == host["X-User-Id"]
    assert cached["maxParticipants"] == 4
    ttl_ms = await redis_client.pttl(room_key(body["roomId"]))
    assert 86_390_000 < ttl_ms <= 86_400_000


async def test_create_honours_max_participants(client, host, redis_client) -> None:
    body = await create(client, host, maxParticipants=3)
    assert body["maxParticipants"] == 3
    cached = json.loads(await redis_client.get(room_key(body["roomId"])))
    assert cached["maxParticipants"] == 3


async def test_a_raised_limit_allows_larger_rooms(settings_with, host) -> None:
    settings = settings_with(max_participants_limit=50)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await create(client, host, maxParticipants=50))["maxParticipants"] == 50
        assert (await client.post("/rooms", headers=host, json={"maxParticipants": 51})).status_code == 422


async def test_room_lifetime_comes_from_settings(settings_with, host, redis_client) -> None:
    settings = settings_with(room_ttl_seconds=600)
    async with AsyncTestClient(app=create_app(settings)) as client:
        body = await create(client, host)
    lifetime = datetime.fromisoformat(body["expiresAt"]) - datetime.fromisoformat(body["createdAt"])
    assert lifetime.total_seconds() == 600
    assert 590_000 < await redis_client.pttl(room_key(body["roomId"])) <= 600_000


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "missing_user_id"),
        ({"X-User-Id": ""}, 401, "missing_user_id"),
        ({"X-User-Id": "alice"}, 401, "invalid_user_id"),
        ({"X-User-Id": "6f1c1a3e-9a53-4c1e-8a53"}, 401, "invalid_user_id"),
    ],
)
async def test_create_needs_a_user_id(client, db, headers, status, error) -> None:
    before = await db.fetchval("SELECT count(*) FROM meetings")
    response = await client.post("/rooms", headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert await db.fetchval("SELECT count(*) FROM meetings") == before


@pytest.mark.parametrize(
    ("body", "status", "error", "mentions"),
    [
        (b'{"maxParticipants": 1}', 422, "max_participants_out_of_range", "between 2 and 4"),
        (b'{"maxParticipants": 5}', 422, "max_participants_out_of_range", "between 2 and 4"),
        (b'{"maxParticipants": "4"}', 400, "invalid_body", "maxParticipants"),
        (b'{"maxParticipants": 3.5}', 400, "invalid_body", "maxParticipants"),
        (b'{"maxParticipants": true}', 400, "invalid_body", "maxParticipants"),
        (b'{"maxParticipants": 3, "tier": "gold"}', 400, "invalid_body", "tier"),
        (b'{"maxParticipants": ', 400, "invalid_body", "malformed"),
        (b"[4]", 400, "invalid_body", "object"),
        (b'{"maxParticipants": 3' + b" " * 5000 + b"}", 413, "body_too_large", "4096 bytes"),
    ],
)
async def test_bad_bodies_are_refused_and_store_nothing(client, host, db, body, status, error, mentions) -> None:
    headers = {**host, "Content-Type": "application/json"}
    response = await client.post("/rooms", headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert mentions.lower() in response.json()["detail"].lower()
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"])) == 0


async def test_an_empty_or_null_body_takes_the_defaults(client, host) -> None:
    for content in (b"", b"null", b"{}"):
        response = await client.post("/rooms", headers={**host, "Content-Type": "application/json"}, content=content)
        assert response.status_code == 201, (content, response.text)
        assert response.json()["maxParticipants"] == 4


async def test_a_taken_code_is_drawn_again(database_url, redis_url, host, db) -> None:
    taken = "abc-defg-hij"
    await db.execute(
        "INSERT INTO meetings (room_id, host_id, expires_at) VALUES ($1, $2, now() + interval '1 day') "
        "ON CONFLICT (room_id) DO NOTHING",
        taken,
        uuid.uuid4(),
    )
    fresh = generate_room_code()
    codes = iter([taken, taken, fresh])
    app = create_app(Settings(database_url=database_url, redis_url=redis_url), new_room_code=lambda: next(codes))
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/rooms", headers=host)
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 201
    assert response.json()["roomId"] == fresh
    assert metric_value(metrics, "roomservice_room_code_collisions_total") == 2


async def test_concurrent_creates_get_distinct_rooms(client, host, db) -> None:
    responses = await asyncio.gather(*(client.post("/rooms", headers=host) for _ in range(40)))
    assert {r.status_code for r in responses} == {201}
    codes = {r.json()["roomId"] for r in responses}
    assert len(codes) == 40
    stored = await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"]))
    assert stored == 40


# -- GET /rooms/{roomId} ----------------------------------------------------------------------


async def test_hit_and_miss_answer_the_same_body(client, host, redis_client) -> None:
    created = await create(client, host, maxParticipants=3)
    code = created["roomId"]

    hit = await client.get(f"/rooms/{code}", headers=host)  # the host's view: all of the room
    await redis_client.delete(room_key(code))
    miss = await client.get(f"/rooms/{code}", headers=host)

    assert hit.status_code == miss.status_code == 200
    assert hit.content == miss.content
    assert hit.json() == created
    # The miss put the room back, with no more than its remaining lifetime.
    assert await redis_client.exists(room_key(code))
    assert 0 < await redis_client.pttl(room_key(code)) <= 86_400_000


async def test_a_miss_is_served_from_postgres_and_recached(client, host, redis_client, db) -> None:
    code = (await create(client, host))["roomId"]
    await redis_client.delete(room_key(code))
    await db.execute("UPDATE meetings SET expires_at = now() + interval '90 seconds' WHERE room_id = $1", code)

    response = await client.get(f"/rooms/{code}")

    assert response.status_code == 200
    assert 0 < await redis_client.pttl(room_key(code)) <= 90_000


@pytest.mark.parametrize("spelling", ["{code}", "{upper}", "{bare}", "{bare_upper}", "{mixed}"])
async def test_codes_are_normalised(client, host, spelling) -> None:
    code = (await create(client, host))["roomId"]
    bare = code.replace("-", "")
    typed = spelling.format(code=code, upper=code.upper(), bare=bare, bare_upper=bare.upper(), mixed=code.title())
    response = await client.get(f"/rooms/{typed}")
    assert response.status_code == 200
    assert response.json()["roomId"] == code


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "abc-defg-hi",
        "abc-defg-hijk",
        "abcdefghijk",
        "ab1-defg-hij",
        "abc_defg_hij",
        "abc--defghij",
        "%C5%BFbc-defg-hij",  # a non-ASCII look-alike of "s"
        "x" * 500,
    ],
)
async def test_malformed_codes_are_refused_without_a_lookup(host, raw) -> None:
    # Redis and Postgres addresses that refuse connections: a lookup would show up as a 503.
    unreachable = Settings(database_url="postgresql://postgres@127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(unreachable)) as client:
        response = await client.get(f"/rooms/{raw}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_room_id"


async def test_unknown_room_is_404(client) -> None:
    response = await client.get("/rooms/qqq-qqqq-qqq")
    assert response.status_code == 404
    assert response.json()["error"] == "room_not_found"


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE meetings SET is_active = false WHERE room_id = $1",
        "UPDATE meetings SET created_at = now() - interval '2 days', starts_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 day' WHERE room_id = $1",
    ],
    ids=["ended", "expired"],
)
async def test_ended_or_expired_room_is_410_and_not_cached(client, host, db, redis_client, change) -> None:
    code = (await create(client, host))["roomId"]
    await db.execute(change, code)
    await redis_client.delete(room_key(code))

    response = await client.get(f"/rooms/{code}")

    assert response.status_code == 410
    assert response.json()["error"] == "room_gone"
    assert not await redis_client.exists(room_key(code))


# -- health, metrics and the API description --------------------------------------------------


async def test_health(client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"postgres": "ok", "redis": "ok", "rateLimits": "enforced", "tickets": "not_configured"}


async def test_metrics_count_what_happened(client, host) -> None:
    await create(client, host)
    text = (await client.get("/metrics")).text
    assert metric_value(text, "roomservice_rooms_created_total") == 1
    assert metric_value(text, "roomservice_cache_breaker_open") == 0


async def test_openapi_describes_every_route(client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths) >= {"/rooms", "/rooms/{room_id}", "/health/live", "/health/ready", "/metrics"}
    create_op = paths["/rooms"]["post"]
    assert {"201", "400", "401", "413", "422", "503"} <= set(create_op["responses"])
    assert create_op["security"] == [{"userId": []}]  # X-User-Id (tests/integration/test_openapi_contract.py)
    assert "requestBody" in create_op
    get_op = paths["/rooms/{room_id}"]["get"]
    assert {"200", "400", "404", "410", "503"} <= set(get_op["responses"])


async def test_unknown_routes_and_methods_answer_json(client) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.delete("/health/live")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
