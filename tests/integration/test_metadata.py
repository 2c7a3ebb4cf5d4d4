"""Room metadata: set on create, replaced and cleared by PATCH, and carried everywhere the room goes
(the answers, the list, the room object in Redis, the events), against real Postgres and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from common.redis.keys import room_key
from tests.support.rooms import create, events_of, raw_data_of

# Nulls inside metadata are the host's values: they survive, at every depth.
METADATA: dict[str, Any] = {
    "title": "Weekly sync ✓",
    "topic": None,
    "tags": ["a", None, 1.5, True, {"deep": None}],
    "owner": {"team": "core", "lead": None, "size": 12345678901234567890},
}


def sized(n: int) -> dict[str, str]:
    """Metadata of exactly `n` bytes as compact JSON: `{"k":"` + n - 8 characters + `"}`."""
    return {"k": "x" * (n - 8)}


async def test_metadata_goes_wherever_the_room_goes(client, host, db, redis_client, stream_name) -> None:
    body = await create(client, host, metadata=METADATA)
    code = body["roomId"]
    assert body["metadata"] == METADATA

    cached = json.loads(await redis_client.get(room_key(code)))
    assert cached["metadata"] == METADATA
    hit = await client.get(f"/rooms/{code}")
    assert hit.json()["metadata"] == METADATA
    await redis_client.delete(room_key(code))
    miss = await client.get(f"/rooms/{code}")  # from Postgres now
    assert miss.json() == hit.json()
    assert json.loads(await db.fetchval("SELECT metadata::text FROM meetings WHERE room_id = $1", code)) == METADATA

    listed = (await client.get("/rooms", headers=host)).json()["rooms"]
    assert [room["metadata"] for room in listed if room["roomId"] == code] == [METADATA]

    (created,) = await raw_data_of(redis_client, stream_name, code, "room.created")
    assert created["metadata"] == METADATA  # the nulls inside it too: added after jsonb_strip_nulls
    (event,) = await events_of(redis_client, stream_name, code)
    assert event.data.metadata == METADATA


async def test_a_room_without_metadata_says_null_to_clients(client, host, redis_client, stream_name) -> None:
    body = await create(client, host)
    code = body["roomId"]
    assert body["metadata"] is None
    assert (await client.get(f"/rooms/{code}")).json()["metadata"] is None
    listed = (await client.get("/rooms", headers=host)).json()["rooms"]
    assert [room["metadata"] for room in listed] == [None]
    # The room object and the event leave the optional field out.
    assert "metadata" not in json.loads(await redis_client.get(room_key(code)))
    (created,) = await raw_data_of(redis_client, stream_name, code, "room.created")
    assert "metadata" not in created


async def test_patch_replaces_and_clears_metadata(client, host, db, redis_client, stream_name) -> None:
    code = (await create(client, host, maxParticipants=3, metadata={"a": 1}))["roomId"]

    replaced = await client.patch(f"/rooms/{code}", headers=host, json={"metadata": {"b": [None, 2]}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["metadata"] == {"b": [None, 2]}  # replaced, not merged
    assert replaced.json()["maxParticipants"] == 3  # left as it was
    assert await db.fetchval("SELECT max_participants FROM meetings WHERE room_id = $1", code) == 3
    assert json.loads(await redis_client.get(room_key(code)))["metadata"] == {"b": [None, 2]}
    assert (await client.get(f"/rooms/{code}")).json()["metadata"] == {"b": [None, 2]}

    cleared = await client.patch(f"/rooms/{code}", headers=host, json={"metadata": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["metadata"] is None
    assert await db.fetchval("SELECT metadata FROM meetings WHERE room_id = $1", code) is None
    assert "metadata" not in json.loads(await redis_client.get(room_key(code)))
    await redis_client.delete(room_key(code))
    assert (await client.get(f"/rooms/{code}")).json()["metadata"] is None

    updated = await raw_data_of(redis_client, stream_name, code, "room.updated")
    assert [data["version"] for data in updated] == [2, 3]
    assert updated[0]["metadata"] == {"b": [None, 2]}
    assert updated[0]["maxParticipants"] == 3
    assert "metadata" not in updated[1]


async def test_one_patch_changes_both_in_one_event(client, host, db, redis_client, stream_name) -> None:
    code = (await create(client, host))["roomId"]
    response = await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 2, "metadata": {"x": 1}})
    assert response.status_code == 200, response.text
    assert (response.json()["maxParticipants"], response.json()["metadata"]) == (2, {"x": 1})
    assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code) == 2
    (updated,) = await raw_data_of(redis_client, stream_name, code, "room.updated")
    assert (updated["maxParticipants"], updated["metadata"]) == (2, {"x": 1})
    # Changing only the limit keeps the metadata.
    again = await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 3})
    assert again.json()["metadata"] == {"x": 1}


async def test_the_size_limit_is_exact(client, host, db, settings) -> None:
    limit = settings.metadata_max_bytes
    assert limit == 2048
    at_limit = await create(client, host, metadata=sized(limit))
    assert at_limit["metadata"] == sized(limit)

    before = await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"]))
    over = await client.post("/rooms", headers=host, json={"metadata": sized(limit + 1)})
    assert over.status_code == 413, over.text
    assert over.json()["error"] == "metadata_too_large"
    assert "2048 bytes" in over.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"])) == before

    code = at_limit["roomId"]
    # Other metadata of exactly the limit: the room's own would change nothing (and write no version).
    other = {"y": "z" * (limit - 8)}
    assert (await client.patch(f"/rooms/{code}", headers=host, json={"metadata": other})).status_code == 200
    refused = await client.patch(f"/rooms/{code}", headers=host, json={"metadata": sized(limit + 1)})
    assert refused.status_code == 413
    assert refused.json()["error"] == "metadata_too_large"
    assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code) == 2


async def test_the_size_is_measured_as_compact_json(client, host) -> None:
    # Whitespace and escapes the client sends do not count: `"\u00e9"` (6 bytes) is é, 2 bytes of UTF-8.
    headers = {**host, "Content-Type": "application/json"}
    for extra, status in ((0, 201), (1, 413)):
        value = "\\u00e9" * 300 + "x" * (1440 + extra)  # compact: 6 + 600 + 1440 + 2 = 2048 bytes, then 2049
        response = await client.post("/rooms", headers=headers, content=f'{{"metadata":  {{ "k" :  "{value}" }} }}')
        assert response.status_code == status, response.text
    assert response.json()["error"] == "metadata_too_large"


BAD_METADATA = [
    (b'{"metadata": [1, 2]}', "object"),
    (b'{"metadata": "text"}', "object"),
    (b'{"metadata": 3}', "object"),
    (b'{"metadata": true}', "object"),
    (b'{"metadata": {"a": "x\\u0000y"}}', "NUL"),
    (b'{"metadata": {"a\\u0000": 1}}', "NUL"),
    (b'{"metadata": {"a": [{"b": ["\\u0000"]}]}}', "NUL"),
    (b'{"metadata": {"a": 1e400}}', "range"),
    (b'{"metadata": ' + b'{"a":' * 33 + b"1" + b"}" * 33 + b"}", "32 levels"),
    (b'{"metadata": {"a":' + b"[" * 1500 + b"]" * 1500 + b"}}", "32 levels"),  # past where decoding gives up
]


@pytest.mark.parametrize(("body", "mentions"), BAD_METADATA)
async def test_bad_metadata_is_400_and_stores_nothing(client, host, db, body, mentions) -> None:
    headers = {**host, "Content-Type": "application/json"}
    response = await client.post("/rooms", headers=headers, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_body"
    assert mentions.lower() in response.json()["detail"].lower()
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"])) == 0

    code = (await create(client, host))["roomId"]
    patched = await client.patch(f"/rooms/{code}", headers=headers, content=body)
    assert patched.status_code == 400, patched.text
    assert patched.json()["error"] == "invalid_body"
    assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code) == 1


async def test_nesting_to_the_limit_is_taken(client, host) -> None:
    nested: Any = 1
    for _ in range(32):
        nested = {"a": nested}
    assert (await create(client, host, metadata=nested))["metadata"] == nested


async def test_a_patch_that_changes_nothing_is_400(client, host, db) -> None:
    code = (await create(client, host))["roomId"]
    for body in ({}, {"maxParticipants": None}):
        response = await client.patch(f"/rooms/{code}", headers=host, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_body"
    assert await db.fetchval("SELECT version FROM meetings WHERE room_id = $1", code) == 1


async def test_patching_metadata_is_for_the_host_of_a_live_room(client, host, db) -> None:
    code = (await create(client, host, metadata={"a": 1}))["roomId"]
    body = {"metadata": {"b": 2}}
    stranger = {"X-User-Id": str(uuid.uuid4())}
    assert (await client.patch(f"/rooms/{code}", headers=stranger, json=body)).json()["error"] == "not_room_host"
    assert (await client.patch("/rooms/qqq-qqqq-qqq", headers=host, json=body)).status_code == 404
    assert (await client.patch(f"/rooms/{code}", json=body)).status_code == 401
    await client.delete(f"/rooms/{code}", headers=host)
    assert (await client.patch(f"/rooms/{code}", headers=host, json=body)).status_code == 410
    assert json.loads(await db.fetchval("SELECT metadata::text FROM meetings WHERE room_id = $1", code)) == {"a": 1}


async def test_the_idempotency_key_covers_the_metadata(client, host) -> None:
    headers = {**host, "Idempotency-Key": f"meta-{uuid.uuid4()}"}
    first = await client.post("/rooms", headers=headers, json={"metadata": {"a": 1, "b": 2}})
    assert first.status_code == 201
    # The same metadata, its keys in another order, is the same request.
    same = await client.post("/rooms", headers=headers, json={"metadata": {"b": 2, "a": 1}})
    assert same.status_code == 201
    assert same.headers["Idempotent-Replayed"] == "true"
    assert same.json() == first.json()
    for other in ({"metadata": {"a": 2, "b": 2}}, {"metadata": None}, None):
        reused = await client.post("/rooms", headers=headers, json=other)
        assert reused.status_code == 422, (other, reused.text)
        assert reused.json()["error"] == "idempotency_key_reused"


async def test_rooms_created_together_keep_their_own_metadata(client, host, db) -> None:
    wanted = [{"i": i, "none": None} if i % 3 else None for i in range(12)]
    answers = await asyncio.gather(
        *(client.post("/rooms", headers=host, json={"metadata": m} if m is not None else None) for m in wanted)
    )
    assert [a.status_code for a in answers] == [201] * len(wanted)
    assert [a.json()["metadata"] for a in answers] == wanted
    for answer, metadata in zip(answers, wanted, strict=True):
        stored = await db.fetchval("SELECT metadata::text FROM meetings WHERE room_id = $1", answer.json()["roomId"])
        assert (None if stored is None else json.loads(stored)) == metadata


async def test_a_smaller_limit_from_settings(settings_with, host) -> None:
    settings = settings_with(metadata_max_bytes=100, max_body_bytes=1124)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.post("/rooms", headers=host, json={"metadata": sized(100)})).status_code == 201
        refused = await client.post("/rooms", headers=host, json={"metadata": sized(101)})
        assert refused.status_code == 413
        assert "100 bytes" in refused.json()["detail"]
        described = (await client.get("/schema/openapi.json")).json()
    schema = described["paths"]["/rooms"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "at most 100 bytes" in schema["properties"]["metadata"]["description"]
