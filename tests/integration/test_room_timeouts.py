"""A room's presence timeouts through the API: `emptyTimeoutSeconds` and `unusedTimeoutSeconds` on create
(this deployment's defaults when absent) and on PATCH (its host or a co-host; 403 for anyone else), their
bounds (400 naming the field, nothing stored or changed), every description of a room carrying them (the
answers, the row, the raw room object in Redis, the events, a GET served from Redis and from Postgres, the
list), an Idempotency-Key claiming them, and the rooms from before migration 0016 never ending so.
Ending rooms by them is the worker's."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import asyncpg
import pytest

from common.redis.keys import room_key
from common.service.idempotency import claim_for
from common.settings import Settings
from roomservice.migrate import available_migrations, migrate
from tests.support.rooms import create, raw_data_of

# Only HTTP and the standalone server's keys: the room object is written by the one script on every
# topology, which the cache tests run on each.
pytestmark = pytest.mark.one_topology

# The test app's defaults, unlike the service's (300, 1800): an answer that has them read the settings.
EMPTY, UNUSED = 120, 900
FIELDS = ("emptyTimeoutSeconds", "unusedTimeoutSeconds")


@pytest.fixture
def settings(settings_with) -> Settings:
    return settings_with(empty_timeout_seconds=EMPTY, unused_timeout_seconds=UNUSED)


@pytest.fixture
def host(new_host) -> dict[str, str]:
    return {"X-User-Id": str(new_host())}  # its rooms are deleted after the test


def timeouts(described: dict[str, Any]) -> tuple[int, int]:
    return described["emptyTimeoutSeconds"], described["unusedTimeoutSeconds"]


async def cached(redis_client, code: str) -> dict[str, Any]:
    """The raw room object at room:<code>, as Signaling and the worker read it."""
    raw = await redis_client.get(room_key(code))
    assert raw is not None, f"room:{code} is not cached"
    found: dict[str, Any] = json.loads(raw)
    return found


async def stored(db, code: str) -> tuple[int, int, int]:
    """The row's timeouts and version."""
    row = await db.fetchrow(
        "SELECT empty_timeout_seconds, unused_timeout_seconds, version FROM meetings WHERE room_id = $1", code
    )
    return row["empty_timeout_seconds"], row["unused_timeout_seconds"], row["version"]


# Bodies of a create and the timeouts the room then has.
CREATES: list[tuple[dict[str, Any], tuple[int, int]]] = [
    ({}, (EMPTY, UNUSED)),  # the deployment's
    ({"emptyTimeoutSeconds": 0, "unusedTimeoutSeconds": 86400}, (0, 86400)),  # the bounds
    ({"emptyTimeoutSeconds": 86400.0, "maxParticipants": 3}, (86400, UNUSED)),  # a JSON integer, spelt so
    ({"unusedTimeoutSeconds": 0}, (EMPTY, 0)),
]


async def test_every_description_of_a_room_carries_its_timeouts(client, host, db, redis_client, stream_name) -> None:
    for body, expected in CREATES:  # in one app: each case costs a few requests, an app ten times that
        answer = await create(client, host, **body)
        code = answer["roomId"]

        assert timeouts(answer) == expected, body
        assert all(type(answer[field]) is int for field in FIELDS), answer  # 86400, not 86400.0
        assert await stored(db, code) == (*expected, 1), body
        assert timeouts(await cached(redis_client, code)) == expected, body
        [created] = await raw_data_of(redis_client, stream_name, code, "room.created")
        assert timeouts(created) == expected, body
        # Served from the room object, to its host and to anyone; then from Postgres, which caches the
        # room again with them.
        anyone: dict[str, str] = {}
        for from_postgres in (False, True):
            for headers in (host, anyone):
                if from_postgres:
                    await redis_client.delete(room_key(code))
                served = await client.get(f"/rooms/{code}", headers=headers)
                assert served.status_code == 200, served.text
                assert timeouts(served.json()) == expected, (body, from_postgres, headers)
                assert timeouts(await cached(redis_client, code)) == expected, (body, from_postgres, headers)
        listed = {room["roomId"]: room for room in (await client.get("/rooms", headers=host)).json()["rooms"]}
        assert timeouts(listed[code]) == expected, body


async def test_a_timeout_out_of_bounds_or_not_a_whole_number_is_refused_naming_it(
    client, host, db, redis_client
) -> None:
    code = (await create(client, host))["roomId"]
    for field in FIELDS:
        for value in (-1, 86401, "5", 1.5, None, True):
            content = json.dumps({field: value}).encode()
            for method, path in (("POST", "/rooms"), ("PATCH", f"/rooms/{code}")):
                refused = await client.request(
                    method, path, headers=host | {"Content-Type": "application/json"}, content=content
                )
                assert refused.status_code == 400, (method, content, refused.text)
                assert refused.json()["error"] == "invalid_body", (method, content)
                assert field in refused.json()["detail"], (method, content, refused.json())
    # Nothing made, nothing changed.
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"])) == 1
    assert await stored(db, code) == (EMPTY, UNUSED, 1)
    assert (await cached(redis_client, code))["version"] == 1


async def test_the_host_and_a_cohost_change_the_timeouts_and_nobody_else(
    client, host, db, redis_client, stream_name
) -> None:
    cohost, stranger = ({"X-User-Id": str(uuid.uuid4())} for _ in range(2))
    code = (await create(client, host, cohostIds=[cohost["X-User-Id"]]))["roomId"]

    by_host = await client.patch(f"/rooms/{code}", headers=host, json={"emptyTimeoutSeconds": 0})
    assert by_host.status_code == 200, by_host.text
    assert timeouts(by_host.json()) == (0, UNUSED)
    by_cohost = await client.patch(
        f"/rooms/{code}", headers=cohost, json={"emptyTimeoutSeconds": 30, "unusedTimeoutSeconds": 86400}
    )
    assert by_cohost.status_code == 200, by_cohost.text
    assert timeouts(by_cohost.json()) == (30, 86400)
    assert await stored(db, code) == (30, 86400, 3)
    assert [timeouts(data) for data in await raw_data_of(redis_client, stream_name, code, "room.updated")] == [
        (0, UNUSED),
        (30, 86400),
    ]

    refused = await client.patch(f"/rooms/{code}", headers=stranger, json={"unusedTimeoutSeconds": 0})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "not_room_host"
    # Asking for what the room already is changes nothing.
    again = await client.patch(f"/rooms/{code}", headers=host, json={"emptyTimeoutSeconds": 30})
    assert again.status_code == 200, again.text
    assert timeouts(again.json()) == (30, 86400)

    assert await stored(db, code) == (30, 86400, 3)
    object_ = await cached(redis_client, code)
    assert (timeouts(object_), object_["version"]) == ((30, 86400), 3)
    assert timeouts((await client.get(f"/rooms/{code}")).json()) == (30, 86400)


async def test_an_idempotency_key_claims_the_timeouts_asked(client, host, db) -> None:
    keyed = host | {"Idempotency-Key": "timeouts-1"}
    first = await client.post("/rooms", headers=keyed, json={"emptyTimeoutSeconds": 60})
    again = await client.post("/rooms", headers=keyed, json={"emptyTimeoutSeconds": 60.0})
    other_bodies = [
        {"emptyTimeoutSeconds": 61},
        {"emptyTimeoutSeconds": 60, "unusedTimeoutSeconds": UNUSED},  # the default, asked: another request
        {"unusedTimeoutSeconds": 60},
        {},
    ]
    reused = [await client.post("/rooms", headers=keyed, json=body) for body in other_bodies]

    assert first.status_code == 201, first.text
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    for body, answer in zip(other_bodies, reused, strict=True):
        assert (answer.status_code, answer.json()["error"]) == (422, "idempotency_key_reused"), body
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE host_id = $1", uuid.UUID(host["X-User-Id"])) == 1
    # A create asking for no timeout claims what it claimed before rooms had them: a retry across the
    # upgrade answers the room the first request made.
    assert claim_for("k", 4).request_hash == hashlib.sha256(b"maxParticipants=4").hexdigest()


async def test_an_object_of_an_earlier_release_reads_as_never(client, host, redis_client) -> None:
    code = (await create(client, host))["roomId"]
    earlier = {k: v for k, v in (await cached(redis_client, code)).items() if k not in FIELDS}
    await redis_client.set(room_key(code), json.dumps(earlier), keepttl=True)

    served = await client.get(f"/rooms/{code}", headers=host)

    assert served.status_code == 200, served.text
    assert timeouts(served.json()) == (0, 0)


async def test_rooms_from_before_the_migration_never_end_by_themselves(scratch_database) -> None:
    upto_0015 = [m for m in available_migrations() if m.name < "0016_"]
    with_0016 = [m for m in available_migrations() if m.name < "0017_"]
    await migrate(scratch_database, upto_0015)
    conn = await asyncpg.connect(scratch_database, timeout=10)
    try:
        # An earlier release's create, before the migration and during the rolling upgrade after it.
        insert = "INSERT INTO meetings (room_id, host_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')"
        await conn.execute(insert, "abc-defg-hij", uuid.uuid4())
        assert await migrate(scratch_database, with_0016) == ["0016_room_presence_timeouts.sql"]
        await conn.execute(insert, "abc-defg-hik", uuid.uuid4())

        rows = await conn.fetch(
            "SELECT empty_timeout_seconds, unused_timeout_seconds, room_event_data(m)::text AS data"
            " FROM meetings m ORDER BY room_id"
        )
        assert [(row["empty_timeout_seconds"], row["unused_timeout_seconds"]) for row in rows] == [(0, 0), (0, 0)]
        assert all(timeouts(json.loads(row["data"])) == (0, 0) for row in rows)
        # Checked on every write from now on; the rows there were not scanned (NOT VALID).
        for column, value in (("empty_timeout_seconds", -1), ("unused_timeout_seconds", 86401)):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(f"UPDATE meetings SET {column} = $1", value)
        checks = await conn.fetch(
            "SELECT convalidated FROM pg_constraint WHERE conname LIKE 'meetings_%_timeout_seconds_valid'"
        )
        assert [check["convalidated"] for check in checks] == [False, False]
    finally:
        await conn.close()
