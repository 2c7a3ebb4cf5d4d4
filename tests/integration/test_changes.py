"""Changing and ending rooms: the per-user change limit, a PATCH that changes nothing, and refusals
decided on the room as it is while the change is made, against real Postgres and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from tests.support.faultproxy import Mode, redis_url_via
from tests.support.metrics import metric_value
from tests.support.rooms import create, events_of
from tests.support.settings import make_settings

LIMIT = 4


def user() -> dict[str, str]:
    return {"X-User-Id": str(uuid.uuid4())}


def named(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """`body` with the users it names by nickname (`ids`) as their ids."""
    return {
        key: [ids[v] for v in value] if key == "cohostIds" else ids[value] if key == "hostId" else value
        for key, value in body.items()
    }


async def stored(db, code: str) -> dict[str, Any]:
    """The room as Postgres has it, with how many events it has written."""
    row = await db.fetchrow(
        """SELECT max_participants, metadata::text, host_id, cohost_ids, version, is_active,
                  (SELECT count(*) FROM room_events e WHERE e.room_id = m.room_id) AS events
           FROM meetings m WHERE room_id = $1""",
        code,
    )
    return dict(row)


@pytest.fixture
async def limited(settings_with) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=create_app(settings_with(change_limit_per_minute=LIMIT))) as client:
        yield client


@pytest.fixture
async def not_at_a_minute_boundary() -> None:
    """The limit counts per clock minute: start well inside one, so a test's requests share it."""
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)


# -- the change limit ---------------------------------------------------------------------------


@pytest.mark.usefixtures("not_at_a_minute_boundary")
async def test_a_user_may_change_and_end_only_so_many_rooms_a_minute(limited, host, db) -> None:
    code = (await create(limited, host))["roomId"]
    cohost = user()
    assert (await limited.patch(f"/rooms/{code}", headers=host, json={"cohostIds": [cohost["X-User-Id"]]})).is_success
    for size in (3, 4, 3):
        assert (await limited.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": size})).is_success
    before = await stored(db, code)
    refused_before = metric_value((await limited.get("/metrics")).text, "roomservice_rate_limited_total") or 0

    over = await limited.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 2, "metadata": {"a": 1}})
    end = await limited.delete(f"/rooms/{code}", headers=host)  # PATCH and DELETE share the allowance

    for refused in (over, end):
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited"
        assert "a minute" in refused.json()["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert await stored(db, code) == before  # nothing changed, no event written
    refused_after = metric_value((await limited.get("/metrics")).text, "roomservice_rate_limited_total")
    assert refused_after == refused_before + 2
    # The allowance is the user's: the co-host still has theirs.
    assert (await limited.patch(f"/rooms/{code}", headers=cohost, json={"maxParticipants": 2})).status_code == 200
    assert (await limited.delete(f"/rooms/{code}", headers=cohost)).status_code == 204


@pytest.mark.usefixtures("not_at_a_minute_boundary")
async def test_refused_changes_count_too(limited, host) -> None:
    # A stranger's 403s and unknown codes cost Postgres a statement each: they are counted as well.
    code = (await create(limited, host))["roomId"]
    stranger = user()
    for _ in range(LIMIT):
        assert (await limited.patch(f"/rooms/{code}", headers=stranger, json={"maxParticipants": 3})).status_code == 403
    assert (await limited.delete(f"/rooms/{code}", headers=stranger)).status_code == 429


async def test_without_a_change_limit_changes_are_not_counted(settings_with, host, redis_client) -> None:
    async with AsyncTestClient(app=create_app(settings_with(change_limit_per_minute=0))) as client:
        code = (await create(client, host))["roomId"]
        for size in (3, 4, 2):
            assert (await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": size})).is_success
    assert not [key async for key in redis_client.scan_iter(f"ratelimit:change:{host['X-User-Id']}:*")]


async def test_the_change_limit_fails_open_without_redis(
    database_url, redis_url, redis_proxy, stream_name, host, db
) -> None:
    settings = make_settings(
        database_url, redis_url_via(redis_url, redis_proxy), stream_name=stream_name, change_limit_per_minute=1
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        code = (await create(client, host))["roomId"]
        redis_proxy.set_mode(Mode.REFUSE)
        for size in (3, 4, 2):
            assert (await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": size})).is_success
        assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
    assert (await stored(db, code))["is_active"] is False


# -- a PATCH that changes nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"maxParticipants": 3},
        {"metadata": {"title": "sync", "tags": ["a", "b"]}},
        {"metadata": {"tags": ["a", "b"], "title": "sync"}},  # the same object, its keys in another order
        {"cohostIds": ["first", "second"]},
        {"hostId": "host"},
        {"hostId": "host", "cohostIds": ["first", "second"], "maxParticipants": 3},
    ],
    ids=["the limit", "the metadata", "the metadata reordered", "the cohosts", "the host", "all"],
)
async def test_a_change_to_what_the_room_already_is_writes_nothing(
    client, host, db, redis_client, stream_name, body
) -> None:
    first, second = user(), user()
    ids = {"host": host["X-User-Id"], "first": first["X-User-Id"], "second": second["X-User-Id"]}
    room = await create(
        client,
        host,
        maxParticipants=3,
        metadata={"title": "sync", "tags": ["a", "b"]},
        cohostIds=[ids["first"], ids["second"]],
    )
    code = room["roomId"]
    before = await stored(db, code)
    response = await client.patch(f"/rooms/{code}", headers=host, json=named(body, ids))

    assert response.status_code == 200, response.text
    assert response.json() == room
    after = await stored(db, code)
    assert after == before  # the version stays, and no event is written
    assert [e.type for e in await events_of(redis_client, stream_name, code)] == ["room.created"]


async def test_a_cohost_asking_for_what_is_already_so_is_answered_the_room(client, host, db) -> None:
    cohost = user()
    room = await create(client, host, cohostIds=[cohost["X-User-Id"]])
    before = await stored(db, room["roomId"])
    response = await client.patch(f"/rooms/{room['roomId']}", headers=cohost, json={"metadata": None})
    assert response.status_code == 200, response.text
    assert response.json() == room
    assert await stored(db, room["roomId"]) == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"cohostIds": ["second", "first"]}, "reordered"),  # the order of the co-hosts is kept: a change
        ({"metadata": None}, "cleared"),
        ({"hostId": "first"}, "handed over"),  # the new host leaves the co-hosts
    ],
)
async def test_what_differs_is_a_change(client, host, db, body, expected) -> None:
    first, second = user(), user()
    ids = {"first": first["X-User-Id"], "second": second["X-User-Id"]}
    room = await create(client, host, metadata={"a": 1}, cohostIds=[ids["first"], ids["second"]])
    response = await client.patch(f"/rooms/{room['roomId']}", headers=host, json=named(body, ids))

    assert response.status_code == 200, response.text
    after = await stored(db, room["roomId"])
    assert after["version"] == 2, expected
    assert after["events"] == 2


async def test_authorization_comes_before_nothing_to_change(client, host) -> None:
    cohost = user()
    code = (await create(client, host, maxParticipants=3, cohostIds=[cohost["X-User-Id"]]))["roomId"]
    as_is = {"cohostIds": [cohost["X-User-Id"]]}
    assert (await client.patch(f"/rooms/{code}", headers=user(), json={"maxParticipants": 3})).status_code == 403
    assert (await client.patch(f"/rooms/{code}", headers=cohost, json=as_is)).status_code == 403
    assert (await client.delete(f"/rooms/{code}", headers=host)).status_code == 204
    assert (await client.patch(f"/rooms/{code}", headers=host, json={"maxParticipants": 3})).status_code == 410
